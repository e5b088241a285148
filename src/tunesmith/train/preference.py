"""KTO, ORPO and reward-model trainers (TRL) on tunesmith's tokenized rows.

Each gets rows in TRL's own pre-tokenized layout, built from tunesmith's ids, so TRL never
re-tokenizes or re-templates: the trained tokens are exactly those ``tunesmith preview`` shows.
"""

from __future__ import annotations

import random
from typing import Any

from transformers import PrinterCallback

from tunesmith.config import Config
from tunesmith.config.defaults import Resolved
from tunesmith.train.trainers import reference_model

_KTO_COLUMNS = {"prompt_ids", "completion_ids", "label"}


def kto_rows(rows: list[dict], batch_size: int, seed: int) -> list[dict]:
    """KTO rows with their KL completions, in a fixed seeded order.

    TRL's KTOTrainer samples sequentially and estimates the KL term from mismatched pairs: each
    row's ``KL_completion_ids`` is the completion of the previous row of its batch (rotated by one).
    Shuffling once with ``seed`` mixes desirable and undesirable rows within batches.
    """
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    out = [{"prompt_ids": rows[i]["prompt_ids"], "completion_ids": rows[i]["completion_ids"],
            "label": bool(rows[i]["label"][0])} for i in order]
    for start in range(0, len(out), batch_size):
        batch = out[start:start + batch_size]
        completions = [r["completion_ids"] for r in batch]
        for row, kl in zip(batch, completions[-1:] + completions[:-1]):
            row["KL_completion_ids"] = kl
    return out


def build_kto(model: Any, config: Config, resolved: Resolved, args: dict[str, Any], tok: Any, collator: Any,
              callbacks: list[Any]) -> Any:
    """KTO (TRL ``KTOTrainer``): desirable completions up, undesirable down, against the reference."""
    from datasets import Dataset
    from trl import KTOConfig, KTOTrainer

    class PretokenizedKTOTrainer(KTOTrainer):
        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):  # type: ignore[no-untyped-def]
            if _KTO_COLUMNS <= set(dataset.column_names):
                return dataset
            return super()._prepare_dataset(dataset, processing_class, args, dataset_name)

    kto_args = KTOConfig(**args, beta=resolved["beta"], disable_dropout=resolved.disable_dropout,
                         desirable_weight=config.kto_desirable_weight,
                         undesirable_weight=config.kto_undesirable_weight, max_length=config.sequence_len,
                         precompute_ref_log_probs=False)
    batch = config.micro_batch_size
    trainer = PretokenizedKTOTrainer(
        model=model,
        ref_model=reference_model(model, config),
        args=kto_args,
        train_dataset=Dataset.from_list(kto_rows(tok.train, batch, config.seed)),
        eval_dataset=Dataset.from_list(kto_rows(tok.eval, batch, config.seed)) if tok.eval else None,
        processing_class=tok.tokenizer,
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)
    return trainer


def orpo_rows(rows: list[dict]) -> list[dict]:
    """ORPO's pre-tokenized layout: prompt + each answer, labels -100 on the prompt."""
    out = []
    for r in rows:
        prompt = r["prompt_ids"]
        row = {"prompt_input_ids": prompt, "prompt_attention_mask": [1] * len(prompt)}
        for side in ("chosen", "rejected"):
            ids = prompt + r[f"{side}_ids"]
            row[f"{side}_input_ids"] = ids
            row[f"{side}_attention_mask"] = [1] * len(ids)
            row[f"{side}_labels"] = [-100] * len(prompt) + r[f"{side}_ids"]
        out.append(row)
    return out


def build_orpo(model: Any, config: Config, resolved: Resolved, args: dict[str, Any], tok: Any, collator: Any,
               callbacks: list[Any]) -> Any:
    """ORPO (TRL experimental ``ORPOTrainer``): NLL on the chosen answer + odds-ratio term, no reference.

    The NLL is taken over the chosen answer's tokens only (as in the ORPO paper and
    LLaMA-Factory); TRL's trainer would also train the prompt tokens.
    """
    import torch.nn.functional as F
    from datasets import Dataset
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer
    from trl.experimental.utils import DPODataCollatorWithPadding

    class PretokenizedORPOTrainer(ORPOTrainer):
        def tokenize_row(self, feature, model=None):  # type: ignore[no-untyped-def]
            return feature

        def concatenated_forward(self, model, batch):  # type: ignore[no-untyped-def]
            cat = self.concatenated_inputs(batch, padding_value=self.padding_value, device=self.accelerator.device)
            n = batch["chosen_labels"].shape[0]
            outputs = model(cat["concatenated_input_ids"], attention_mask=cat["concatenated_attention_mask"],
                            use_cache=False, **({"output_router_logits": True} if self.aux_loss_enabled else {}))
            logits, labels = outputs.logits, cat["concatenated_labels"]
            nll = F.cross_entropy(logits[:n, :-1].flatten(0, 1), labels[:n, 1:].flatten().to(logits.device),
                                  ignore_index=-100)
            logps = self.get_batch_logps(logits, labels, average_log_prob=True)
            result = (logps[:n], logps[n:], logits[:n, :-1], logits[n:, :-1], nll)
            return (*result, outputs.aux_loss) if self.aux_loss_enabled else result

    pad = tok.tokenizer.pad_token_id if tok.tokenizer.pad_token_id is not None else tok.tokenizer.eos_token_id
    # ORPO batches have no input_ids column for transformers to count tokens in
    args = {**args, "include_num_input_tokens_seen": "no"}
    orpo_args = ORPOConfig(**args, beta=resolved["beta"], max_length=config.sequence_len, padding_value=pad,
                           disable_dropout=resolved.disable_dropout)
    trainer = PretokenizedORPOTrainer(
        model=model,
        args=orpo_args,
        data_collator=DPODataCollatorWithPadding(pad_token_id=pad),
        train_dataset=Dataset.from_list(orpo_rows(tok.train)),
        eval_dataset=Dataset.from_list(orpo_rows(tok.eval)) if tok.eval else None,
        processing_class=tok.tokenizer,
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)
    return trainer


def reward_rows(rows: list[dict]) -> list[dict]:
    """RewardTrainer's pre-tokenized layout: the whole chosen and rejected sequences."""
    return [{"chosen_ids": r["prompt_ids"] + r["chosen_ids"], "rejected_ids": r["prompt_ids"] + r["rejected_ids"]}
            for r in rows]


def build_rm(model: Any, config: Config, resolved: Resolved, args: dict[str, Any], tok: Any, collator: Any,
             callbacks: list[Any]) -> Any:
    """A reward model (TRL ``RewardTrainer``): one score per sequence, chosen scored above rejected."""
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    rm_args = RewardConfig(**args, max_length=config.sequence_len, disable_dropout=resolved.disable_dropout)
    trainer = RewardTrainer(
        model=model,
        args=rm_args,
        train_dataset=Dataset.from_list(reward_rows(tok.train)),
        eval_dataset=Dataset.from_list(reward_rows(tok.eval)) if tok.eval else None,
        processing_class=tok.tokenizer,
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)
    return trainer
