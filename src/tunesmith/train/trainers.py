"""Build the transformers / TRL trainer for a run, fed with tunesmith's own tokenized data.

``BUILDERS`` is the registry of trainer builders; ``config/methods.yaml`` says which one each
method uses. Every builder gets the same arguments and returns a transformers ``Trainer``, so
the run directory, checkpoints, resume and watchdog are the same for every method.
"""

from __future__ import annotations

import copy
from typing import Any

from transformers import EarlyStoppingCallback, PrinterCallback, Trainer, TrainingArguments

from tunesmith.config import Config
from tunesmith.config.methods import method_spec
from tunesmith.errors import ConfigError
from tunesmith.config.defaults import Resolved
from tunesmith.models.precision import Precision

def schedule(config: Config, has_eval: bool, resolved: Resolved | None = None) -> dict[str, Any]:
    """Evaluation / checkpoint cadence; best-checkpoint restore needs saves aligned to evals.

    ``resolved`` carries eval/save steps computed from ``evals_per_epoch`` / ``saves_per_epoch``.
    """
    values = resolved.values if resolved is not None else {}
    config_save = values.get("save_steps", config.save_steps)
    config_eval = values.get("eval_steps", config.eval_steps)
    out: dict[str, Any] = {"save_strategy": "steps" if config_save else "epoch", "save_steps": config_save}
    if not has_eval:
        return {**out, "eval_strategy": "no"}
    eval_steps = config_eval or config_save
    if eval_steps is None:
        return {**out, "eval_strategy": "epoch", "save_strategy": "epoch", "load_best_model_at_end": True,
                "metric_for_best_model": "eval_loss", "greater_is_better": False}
    save_steps = config_save or eval_steps
    if save_steps % eval_steps:
        raise ConfigError(f"save_steps: must be a multiple of eval_steps ({eval_steps}) to keep the best checkpoint (got {save_steps})")
    return {"eval_strategy": "steps", "eval_steps": eval_steps, "save_strategy": "steps", "save_steps": save_steps,
            "load_best_model_at_end": True, "metric_for_best_model": "eval_loss", "greater_is_better": False}


def common_args(config: Config, resolved: Resolved, precision: Precision, out_dir: str,
                has_eval: bool, gradient_checkpointing: bool) -> dict[str, Any]:
    return {**_base_args(config, resolved, precision, out_dir, gradient_checkpointing),
            **_extra_args(config, precision), **schedule(config, has_eval, resolved)}


def _base_args(config: Config, resolved: Resolved, precision: Precision, out_dir: str,
               gradient_checkpointing: bool) -> dict[str, Any]:
    return {
        "output_dir": out_dir,
        "per_device_train_batch_size": config.micro_batch_size,
        "per_device_eval_batch_size": config.micro_batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "num_train_epochs": resolved["num_epochs"],
        "max_steps": config.max_steps,
        "learning_rate": resolved["learning_rate"],
        "lr_scheduler_type": config.lr_scheduler,
        # a float below 1 is a ratio of the total steps (transformers 5)
        "warmup_steps": resolved.values.get("warmup_steps", resolved.values.get("warmup_ratio")),
        "weight_decay": config.weight_decay,
        "max_grad_norm": resolved["max_grad_norm"],
        "optim": config.optimizer,
        "bf16": precision.bf16,
        "fp16": precision.fp16,
        "use_cpu": precision.use_cpu,
        "activation_checkpointing": gradient_checkpointing,
        "logging_steps": config.logging_steps,
        "logging_nan_inf_filter": False,
        # tunesmith rotates after marking the new checkpoint complete (train/checkpoints.py); the
        # Trainer's own rotation would delete the old one first
        "save_total_limit": None,
        "report_to": [] if config.report_to == "none" else [config.report_to],
        "seed": config.seed,
        "data_seed": config.seed,
        "remove_unused_columns": False,
        # packed batches carry a 4D mask: count slots (packing efficiency is reported separately)
        "include_num_input_tokens_seen": "all" if config.sample_packing else "non_padding",
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
    }


def training_arguments(config: Config, args: dict[str, Any], resolved: Resolved) -> Any:
    """``TrainingArguments`` (sft, cpt) or TRL's ``DPOConfig`` (dpo) for ``common_args``' output
    (the other methods build their TRL configs in ``preference.py`` / ``distill.py``)."""
    if method_spec(config.method).trainer == "dpo":
        from trl import DPOConfig

        return DPOConfig(**args, beta=resolved["beta"], loss_type=[config.loss_type],
                         max_length=config.sequence_len, precompute_ref_log_probs=False,
                         disable_dropout=resolved.disable_dropout)
    return TrainingArguments(**args, label_names=["labels"])


def _extra_args(config: Config, precision: Precision) -> dict[str, Any]:
    """Checkpoint contents, tracker names and TF32 (only where a CUDA device can use it)."""
    out: dict[str, Any] = {"save_only_model": config.save_only_model}
    if config.tracking.run_name:
        out["run_name"] = config.tracking.run_name
    if config.tracking.project:
        out["project"] = config.tracking.project
    if config.tf32 is not None and not precision.use_cpu:
        out["tf32"] = config.tf32
    return out


def with_early_stopping(config: Config, eval_: list[dict], callbacks: list[Any]) -> list[Any]:
    if config.early_stopping_patience and eval_:
        return [*callbacks, EarlyStoppingCallback(config.early_stopping_patience)]
    return callbacks


def build(model: Any, config: Config, resolved: Resolved, args: dict[str, Any], tok: Any, collator: Any,
          callbacks: list[Any], fused_loss: bool = False, padding_free: bool = False, weighted: bool = False) -> Any:
    """The trainer of ``config.method`` (its ``trainer`` in methods.yaml), on ``tok``'s rows.

    ``fused_loss`` / ``padding_free`` (``speed.choose``) apply to the SFT/cpt and DPO trainers;
    ``weighted`` (rows with ``loss_weights``) makes SFT weigh each trained token
    (``speed.WeightedLossTrainer``)."""
    from tunesmith.train import distill, preference

    def sft(*common: Any) -> Trainer:
        model, config, resolved, args, tok, collator, callbacks = common
        return build_sft(model, config, args, tok.train, tok.eval, collator, callbacks, fused_loss=fused_loss,
                         weighted=weighted)

    def dpo(*common: Any) -> Any:
        return build_dpo(*common, fast=fused_loss, padding_free=padding_free)

    builders = {"sft": sft, "dpo": dpo, "kto": preference.build_kto, "orpo": preference.build_orpo,
                "rm": preference.build_rm, "distill": distill.build_distill}
    builder = builders[method_spec(config.method).trainer]
    return builder(model, config, resolved, args, tok, collator, with_early_stopping(config, tok.eval, callbacks))


def build_sft(model: Any, config: Config, args: dict[str, Any], train: list[dict], eval_: list[dict],
              collator: Any, callbacks: list[Any], fused_loss: bool = False, weighted: bool = False) -> Trainer:
    """SFT and continual pretraining: transformers' Trainer on pre-tokenized rows (its training
    loss computed by ``lmloss`` at trained positions only when ``fused_loss``)."""
    from tunesmith.train.speed import FastLossTrainer, WeightedLossTrainer

    trainer = (FastLossTrainer if fused_loss else WeightedLossTrainer if weighted else Trainer)(
        model=model,
        args=TrainingArguments(**args, label_names=["labels"]),
        train_dataset=train,
        eval_dataset=eval_ or None,
        data_collator=collator,
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)  # tunesmith prints its own progress
    return trainer


def build_dpo(model: Any, config: Config, resolved: Resolved, args: dict[str, Any], tok: Any, collator: Any,
              callbacks: list[Any], fast: bool = False, padding_free: bool = False) -> Any:
    """DPO via TRL on tunesmith's prompt/chosen/rejected ids (TRL does not re-tokenize).

    The reference model is ``ref_model`` when set; else, for full fine-tuning, a frozen copy of
    the starting weights (with an adapter, the base without the adapter). ``fast``: TRL's trainer
    with tunesmith's loss computation (``train/dpo.py``), on padding-free batches when ``padding_free``.
    """
    from datasets import Dataset

    from tunesmith.train import dpo

    ref = reference_model(model, config)
    if padding_free and ref is not None:
        _varlen_reference(ref)
    extra: dict[str, Any] = {}
    if fast:
        pad = tok.tokenizer.pad_token_id if tok.tokenizer.pad_token_id is not None else tok.tokenizer.eos_token_id
        extra["data_collator"] = dpo.PreferenceCollator(pad, config.sequence_len, padding_free)
    trainer = (dpo.FastDPOTrainer if fast else dpo.PretokenizedDPOTrainer)(
        model=model,
        ref_model=ref,
        args=training_arguments(config, args, resolved),
        train_dataset=Dataset.from_list(tok.train),
        eval_dataset=Dataset.from_list(tok.eval) if tok.eval else None,
        processing_class=tok.tokenizer,
        callbacks=callbacks,
        **extra,
    )
    trainer.remove_callback(PrinterCallback)
    return trainer


def _varlen_reference(ref: Any) -> None:
    """The reference model reads the same padding-free rows: the same attention implementation."""
    from tunesmith.train import varlen

    blocker = varlen.unsupported(ref)
    if blocker and ref.config._attn_implementation != varlen.NAME:
        raise ConfigError(f"ref_model: cannot read padding-free DPO batches ({blocker}); set padding_free: false")
    ref.set_attn_implementation(varlen.register())


def reference_model(model: Any, config: Config) -> Any | None:
    """``ref_model`` when set (its tokenizer checked by ``preflight.check_other_models``); a frozen copy for
    full fine-tuning; None with an adapter (TRL then disables the adapter to get the reference)."""
    from peft import PeftModel

    from tunesmith.train.model import load_frozen

    if config.ref_model:
        return load_frozen(config, config.ref_model, "ref_model")
    if isinstance(model, PeftModel):
        return None
    ref = copy.deepcopy(model).eval()
    ref.requires_grad_(False)
    return ref
