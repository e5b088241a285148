"""Build the transformers / TRL trainer for a run, fed with tunesmith's own tokenized data."""

from __future__ import annotations

import copy
from typing import Any

from transformers import EarlyStoppingCallback, PrinterCallback, Trainer, TrainingArguments

from tunesmith.config import Config
from tunesmith.errors import ConfigError
from tunesmith.train.defaults import Resolved
from tunesmith.train.precision import Precision

_DPO_COLUMNS = {"prompt_ids", "chosen_ids", "rejected_ids"}


def schedule(config: Config, has_eval: bool) -> dict[str, Any]:
    """Evaluation / checkpoint cadence; best-checkpoint restore needs saves aligned to evals."""
    out: dict[str, Any] = {"save_strategy": "steps" if config.save_steps else "epoch", "save_steps": config.save_steps}
    if not has_eval:
        return {**out, "eval_strategy": "no"}
    eval_steps = config.eval_steps or config.save_steps
    if eval_steps is None:
        return {**out, "eval_strategy": "epoch", "save_strategy": "epoch", "load_best_model_at_end": True,
                "metric_for_best_model": "eval_loss", "greater_is_better": False}
    save_steps = config.save_steps or eval_steps
    if save_steps % eval_steps:
        raise ConfigError(f"save_steps: must be a multiple of eval_steps ({eval_steps}) to keep the best checkpoint (got {save_steps})")
    return {"eval_strategy": "steps", "eval_steps": eval_steps, "save_strategy": "steps", "save_steps": save_steps,
            "load_best_model_at_end": True, "metric_for_best_model": "eval_loss", "greater_is_better": False}


def common_args(config: Config, resolved: Resolved, precision: Precision, out_dir: str,
                has_eval: bool, gradient_checkpointing: bool) -> dict[str, Any]:
    return {
        "output_dir": out_dir,
        "per_device_train_batch_size": config.micro_batch_size,
        "per_device_eval_batch_size": config.micro_batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "num_train_epochs": resolved["num_epochs"],
        "max_steps": config.max_steps,
        "learning_rate": resolved["learning_rate"],
        "lr_scheduler_type": config.lr_scheduler,
        "warmup_steps": resolved["warmup_ratio"],
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
        **schedule(config, has_eval),
    }


def training_arguments(config: Config, args: dict[str, Any]) -> Any:
    """``TrainingArguments`` (sft, cpt) or TRL's ``DPOConfig`` (dpo) for ``common_args``' output."""
    if config.method == "dpo":
        from trl import DPOConfig

        return DPOConfig(**args, beta=config.beta, loss_type=[config.loss_type],
                         max_length=config.sequence_len, precompute_ref_log_probs=False)
    return TrainingArguments(**args, label_names=["labels"])


def build_sft(model: Any, config: Config, args: dict[str, Any], train: list[dict], eval_: list[dict],
              collator: Any, callbacks: list[Any], fused_loss: bool = False) -> Trainer:
    """SFT and continual pretraining: transformers' Trainer on pre-tokenized rows (its training
    loss computed by ``lmloss`` at trained positions only when ``fused_loss``)."""
    from tunesmith.train.speed import FastLossTrainer

    if config.early_stopping_patience and eval_:
        callbacks = [*callbacks, EarlyStoppingCallback(config.early_stopping_patience)]
    trainer = (FastLossTrainer if fused_loss else Trainer)(
        model=model,
        args=training_arguments(config, args),
        train_dataset=train,
        eval_dataset=eval_ or None,
        data_collator=collator,
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)  # tunesmith prints its own progress
    return trainer


def build_dpo(model: Any, config: Config, args: dict[str, Any], train: list[dict], eval_: list[dict],
              tokenizer: Any, callbacks: list[Any]) -> Any:
    """DPO via TRL on tunesmith's prompt/chosen/rejected ids (TRL does not re-tokenize)."""
    from datasets import Dataset
    from peft import PeftModel
    from trl import DPOTrainer

    class PretokenizedDPOTrainer(DPOTrainer):
        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):  # type: ignore[no-untyped-def]
            if _DPO_COLUMNS <= set(dataset.column_names):
                return dataset
            return super()._prepare_dataset(dataset, processing_class, args, dataset_name)

    if config.early_stopping_patience and eval_:
        callbacks = [*callbacks, EarlyStoppingCallback(config.early_stopping_patience)]
    ref = None
    if not isinstance(model, PeftModel):
        ref = copy.deepcopy(model).eval()
        ref.requires_grad_(False)
    dpo_args = training_arguments(config, args)
    trainer = PretokenizedDPOTrainer(
        model=model,
        ref_model=ref,
        args=dpo_args,
        train_dataset=Dataset.from_list(train),
        eval_dataset=Dataset.from_list(eval_) if eval_ else None,
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)
    return trainer
