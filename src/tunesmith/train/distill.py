"""Knowledge distillation (``method: distill``): the student learns the teacher's next-token
distributions on tunesmith's tokenized conversations, through TRL's GKD trainer.

TRL 1.16 ships two distillation trainers: ``DistillationTrainer`` generates completions on
policy from raw prompts (it cannot train on pre-tokenized rows), and ``experimental.gkd``'s
``GKDTrainer``, which with ``lmbda=0`` is supervised distillation on the dataset's own
completions: the generalised Jensen-Shannon divergence between student and teacher on every
trained (assistant) token. tunesmith uses the latter, so the trained tokens are the ones SFT
would train. Teacher and student must share one tokenizer: the loss compares distributions
over the same vocabulary.
"""

from __future__ import annotations

from typing import Any

from transformers import PrinterCallback

from tunesmith.config import Config
from tunesmith.errors import ConfigError
from tunesmith.config.defaults import Resolved


_SHARED = {  # what compares the two models' next-token distributions, per key
    "teacher_model": ("the teacher", "the student", "distillation compares next-token distributions over one "
                      "vocabulary, so teacher and student must share a tokenizer (pick a teacher from the student's "
                      "model family)"),
    "ref_model": ("the reference model", "the trained model", "the preference loss compares both models' "
                  "log-probabilities of the same token ids, so they must share a tokenizer (the reference is "
                  "normally the starting model: leave ref_model unset)"),
}


def check_shared_tokenizer(student: Any, other_path: str, key: str = "teacher_model") -> None:
    """Raise a ConfigError unless ``key``'s model (the teacher, the DPO/KTO reference) has the tokenizer of the
    model trained."""
    from tunesmith.errors import TunesmithError
    from tunesmith.tokenize import load_saved

    try:
        other = load_saved(other_path)
    except TunesmithError as exc:
        raise ConfigError(f"{key}: {exc}") from None
    mine, theirs = student.get_vocab(), other.get_vocab()
    if mine != theirs:
        differ = len(set(mine.items()) ^ set(theirs.items())) // 2 or abs(len(mine) - len(theirs))
        what, trained, why = _SHARED[key]
        raise ConfigError(f"{key}: {what}'s tokenizer is not {trained}'s ({len(theirs):,} vs {len(mine):,} tokens, "
                          f"about {differ:,} differ); {why}")


def build_distill(model: Any, config: Config, resolved: Resolved, args: dict[str, Any], tok: Any, collator: Any,
                  callbacks: list[Any]) -> Any:
    from datasets import Dataset
    from trl.experimental.gkd import GKDConfig, GKDTrainer

    from tunesmith.train.model import load_frozen

    if len(tok.train) and "loss_weights" in tok.train[0]:
        raise ConfigError("distill: the rows carry per-message loss_weight, which the distillation loss (TRL GKD) "
                          "does not apply: every assistant token would count alike; remove loss_weight from the "
                          "data, or train with method: sft")

    teacher = load_frozen(config, str(config.teacher_model), "teacher_model")
    student_vocab = model.get_input_embeddings().weight.shape[0]
    if teacher.get_input_embeddings().weight.shape[0] != student_vocab:
        raise ConfigError(
            f"teacher_model: the teacher's embedding matrix has {teacher.get_input_embeddings().weight.shape[0]:,} "
            f"rows, the student's {student_vocab:,}; their logits cannot be compared token for token"
        )
    gkd_args = GKDConfig(**args, lmbda=0.0, beta=resolved["beta"], seq_kd=False, max_length=config.sequence_len,
                         disable_dropout=resolved.disable_dropout,
                         dataset_kwargs={"skip_prepare_dataset": True})
    trainer = GKDTrainer(
        model=model,
        teacher_model=teacher,
        args=gkd_args,
        data_collator=collator,
        train_dataset=Dataset.from_list(tok.train),
        eval_dataset=Dataset.from_list(tok.eval) if tok.eval else None,
        processing_class=tok.tokenizer,
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)
    return trainer
