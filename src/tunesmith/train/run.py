"""``train.run(config)``: the whole training job around the trainer."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tunesmith.config import Config
from tunesmith.errors import TunesmithError
from tunesmith.train import checkpoints as ckpt
from tunesmith.train.callbacks import MetricsLogger, Progress, Watchdog
from tunesmith.train.rundir import RunDir, start_record


@dataclass
class TrainResult:
    output_dir: Path
    model_dir: Path
    status: str
    global_step: int
    train_loss: float | None
    best_eval_loss: float | None
    trainable_params: int
    total_params: int
    resumed_from: str | None = None
    warnings: list[str] = field(default_factory=list)
    model: Any = field(default=None, repr=False)
    tokenizer: Any = field(default=None, repr=False)


def run(config: Config, resume: bool = False, overwrite: bool = False, quiet: bool = False,
        say: Callable[[str], None] = print) -> TrainResult:
    """Train per ``config``; everything lands in ``config.output_dir``."""
    from tunesmith import data, tokenize
    from tunesmith.train.defaults import resolve
    from tunesmith.train.precision import choose

    if quiet:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    rundir = RunDir(Path(config.output_dir))
    prior = ckpt.complete_checkpoints(rundir.checkpoints)
    if prior and not resume and not overwrite:
        say(f"found complete checkpoint {prior[-1].name} in {rundir.path}: resuming (use --overwrite to start over)")
        resume = True
    rundir.prepare(config, resume=resume, overwrite=overwrite)
    from tunesmith.models import resolve as resolve_base

    base_folder = resolve_base(config.base_model, say=say)  # a GGUF / catalogue base is converted (once) up front
    if base_folder != config.base_model:
        rundir.update_run(base_model_folder=base_folder)
    dataset = data.run(config)
    tokenizer = tokenize.load_tokenizer(config.base_model, config.chat_template)
    _audit(config, dataset, tokenizer, say)
    tok = tokenize.run(config, dataset, tokenizer)
    if tok.cache_hit:
        say("tokenized data: reused cache (same data, tokenizer and settings)")
    resolved = resolve(config, len(tok.train))
    precision = choose(config.bf16)
    say(f"precision: {precision.name} ({precision.reason})")
    for line in resolved.lines():
        say(f"  {line}")
    record = start_record(config, dataset.fingerprint, tok.fingerprint, tok.stats, resolved.values)
    record["precision"] = precision.name
    rundir.update_run(**record)
    try:
        return _train(config, rundir, tok, resolved, precision, resume, quiet, say)
    except BaseException as exc:
        rundir.update_run(status="failed", error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                          end_time=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        raise


def _audit(config: Config, dataset: Any, tokenizer: Any, say: Callable[[str], None]) -> None:
    from tunesmith.data import audit

    report = audit.run(config, data=dataset, tokenizer=tokenizer)
    report.enforce(config.audit.fail_on)
    for finding in report.findings:
        if finding.severity in ("error", "warning"):
            say(f"audit {finding.severity}: {finding.check}: {finding.message}")


def _train(config: Config, rundir: RunDir, tok: Any, resolved: Any, precision: Any, resume: bool,
           quiet: bool, say: Callable[[str], None]) -> TrainResult:
    from tunesmith.tokenize import Collator
    from tunesmith.train import model as models
    from tunesmith.train import trainers
    from tunesmith.train.artifacts import model_info, save_result

    warnings: list[str] = []

    def warn(kind: str, text: str) -> None:
        warnings.append(text)
        logger.write({"warning": kind, "message": text})
        say(f"warning: {text}")

    grad_ckpt = config.gradient_checkpointing if config.gradient_checkpointing is not None else config.adapter == "qlora"
    from transformers import set_seed

    set_seed(config.seed)  # adapter initialisation must be reproducible, not just the data order
    base = models.load_base(config)
    model = models.attach_adapter(base, config, resolved, grad_ckpt)
    trainable, total = models.parameter_counts(model)
    say(f"parameters: {trainable:,} trainable of {total:,} ({100 * trainable / max(total, 1):.3f}%)")
    logger = MetricsLogger(rundir.metrics)
    callbacks: list[Any] = [logger, Watchdog(resolved["learning_rate"], config.early_stopping_patience or 3, warn),
                            ckpt.CompletionMarker()]
    if not quiet:
        callbacks.append(Progress())
    args = trainers.common_args(config, resolved, precision, str(rundir.checkpoints), bool(tok.eval), grad_ckpt)
    collator = Collator(tok.tokenizer.pad_token_id, attn_implementation=base.config._attn_implementation)
    if config.method == "dpo":
        trainer = trainers.build_dpo(model, config, args, tok.train, tok.eval, tok.tokenizer, callbacks)
    else:
        trainer = trainers.build_sft(model, config, args, tok.train, tok.eval, collator, callbacks)
    start_from = _resume_point(rundir, resume, say)
    output = trainer.train(resume_from_checkpoint=start_from)
    model_dir = save_result(trainer.model, tok.tokenizer, rundir.path / "model", model_info(config))
    best = trainer.state.best_metric
    rundir.update_run(
        status="completed", end_time=time.strftime("%Y-%m-%dT%H:%M:%S%z"), global_step=trainer.state.global_step,
        train_loss=output.training_loss, best_eval_loss=best, trainable_params=trainable, total_params=total,
        train_runtime_s=output.metrics.get("train_runtime"), resumed_from=start_from, warnings=warnings,
        best_checkpoint=trainer.state.best_model_checkpoint,
    )
    return TrainResult(rundir.path, model_dir, "completed", trainer.state.global_step, output.training_loss,
                       best, trainable, total, start_from, warnings, trainer.model, tok.tokenizer)


def _resume_point(rundir: RunDir, resume: bool, say: Callable[[str], None]) -> str | None:
    if not resume:
        return None
    for removed in ckpt.discard_incomplete(rundir.checkpoints):
        say(f"discarded incomplete checkpoint {removed.name} (the run was killed while writing it)")
    done = ckpt.complete_checkpoints(rundir.checkpoints)
    if not done:
        say("no complete checkpoint to resume from: starting from step 0")
        return None
    say(f"resuming from {done[-1].name}")
    return str(done[-1])
