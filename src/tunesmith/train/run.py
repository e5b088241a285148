"""``train.run(config)``: the whole training job around the trainer.

Order: decide what to do with ``output_dir`` (fresh / resume / extend / nothing, see
``resume.py``; no heavy import, no data read) -> preflight checks that need the model ->
claim the directory -> data, audit, tokenization -> a resume must match the run's recorded
fingerprints -> train -> save ``model/`` atomically -> record the attempt in run.json.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from tunesmith.config import Config
from tunesmith.train import checkpoints as ckpt
from tunesmith.train import resume as resumes
from tunesmith.train.guard import RunDirError
from tunesmith.train.rundir import RunDir, base_fingerprint, start_record


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
        say: Callable[[str], None] = print, callbacks: Sequence[Any] = ()) -> TrainResult:
    """Train per ``config``; everything lands in ``config.output_dir``.

    ``callbacks``: extra ``transformers.TrainerCallback`` objects (e.g. a benchmark's probe).

    ``status`` is ``completed``, or ``unchanged`` when the directory already holds this
    completed run (nothing is trained; see ``resume.decide`` for every case).
    """
    rundir = RunDir(Path(config.output_dir))
    plan = resumes.decide(config, rundir.path, resume, overwrite)
    if plan.message:
        say(plan.message)
    if plan.kind == "done":
        return _unchanged(rundir, plan.record)
    from tunesmith.models import resolve as resolve_base
    from tunesmith.plan import check_fit
    from tunesmith.train import preflight

    resolve_base(config.base_model, say=say)  # a GGUF / catalogue base is converted (once, cached) up front
    tokenizer = preflight.run(config)  # config checks that need the model's files (not its weights)
    check_fit(config, say)  # the plan's memory estimate vs the device: stop before the weights are loaded
    if plan.kind == "fresh":
        rundir.begin(config, plan)
    try:
        return _prepare_and_train(config, rundir, plan, tokenizer, quiet, say, list(callbacks))
    except BaseException as exc:
        if rundir.begun:  # a refused resume leaves the run's record as it was
            rundir.end_attempt("failed", error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        raise


def _prepare_and_train(config: Config, rundir: RunDir, plan: resumes.Plan, tokenizer: Any, quiet: bool,
                       say: Callable[[str], None], extra_callbacks: list[Any]) -> TrainResult:
    from tunesmith import data, tokenize
    from tunesmith.train.defaults import resolve
    from tunesmith.train.precision import choose

    if quiet:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    dataset = data.run(config)
    memo = tokenize.EncodeMemo()  # the audit's encodings, reused by tokenization
    _audit(config, dataset, tokenizer, say, memo)
    tok = tokenize.run(config, dataset, tokenizer, memo)
    del memo
    if tok.cache_hit:
        say("tokenized data: reused cache (same data, tokenizer and settings)")
    facts = {"data_fingerprint": dataset.fingerprint, "tokenizer_fingerprint": tok.fingerprint,
             "base_fingerprint": base_fingerprint(config.base_model)}
    if plan.kind != "fresh":
        problems = resumes.verify(plan, facts)
        if problems:
            raise RunDirError(f"{rundir.path}: cannot resume this run: {'; '.join(problems)}; restore the original "
                              "inputs, or --overwrite to start over, or choose another output_dir")
        rundir.begin(config, plan)
    rejected = rundir.write_rejected(dataset.rejected, tok.rejected)
    if rejected:
        say(f"{len(dataset.rejected) + len(tok.rejected)} rows left out, each with its reason: {rejected}")
    resolved = resolve(config, len(tok.train))
    precision = choose(config.bf16)
    say(f"precision: {precision.name} ({precision.reason})")
    for line in resolved.lines():
        say(f"  {line}")
    record = start_record(config, facts, tok.stats, resolved.values)
    record["precision"] = precision.name
    base_folder = _base_folder(config)
    if base_folder != config.base_model:
        record["base_model_folder"] = base_folder
    rundir.update_run(**record)
    return _train(config, rundir, tok, resolved, precision, plan, quiet, say, extra_callbacks)


def _base_folder(config: Config) -> str:
    from tunesmith.models import resolve as resolve_base

    return resolve_base(config.base_model)


def _audit(config: Config, dataset: Any, tokenizer: Any, say: Callable[[str], None], memo: Any = None) -> None:
    from tunesmith.data import audit

    report = audit.run(config, data=dataset, tokenizer=tokenizer, memo=memo)
    report.enforce(config.audit.fail_on)
    for finding in report.findings:
        if finding.severity in ("error", "warning"):
            say(f"audit {finding.severity}: {finding.check}: {finding.message}")


def _train(config: Config, rundir: RunDir, tok: Any, resolved: Any, precision: Any, plan: resumes.Plan,
           quiet: bool, say: Callable[[str], None], extra_callbacks: list[Any]) -> TrainResult:
    from transformers import set_seed

    from tunesmith.train import model as models
    from tunesmith.train import speed, trainers
    from tunesmith.train.artifacts import model_info, save_result
    from tunesmith.train.callbacks import CompletionMarker, MetricsLogger, Progress, Watchdog

    warnings: list[str] = []

    def warn(kind: str, text: str) -> None:
        warnings.append(text)
        logger.write({"warning": kind, "message": text})
        say(f"warning: {text}")

    grad_ckpt = config.gradient_checkpointing if config.gradient_checkpointing is not None else config.adapter == "qlora"
    set_seed(config.seed)  # adapter initialisation must be reproducible, not just the data order
    base = models.load_base(config)
    model = models.attach_adapter(base, config, resolved, grad_ckpt)
    speedups = speed.choose(config, base, model, precision)
    speed.prepare(base, model, speedups)
    rundir.update_run(optimisations=speedups.record())
    trainable, total = models.parameter_counts(model)
    say(f"parameters: {trainable:,} trainable of {total:,} ({100 * trainable / max(total, 1):.3f}%)")
    start_from = _resume_point(rundir, plan, say)
    logger = MetricsLogger(rundir.metrics, from_step=ckpt.step_of(Path(start_from)) if start_from else 0)
    callbacks: list[Any] = [logger, Watchdog(resolved["learning_rate"], config.early_stopping_patience or 3, warn),
                            CompletionMarker(config.save_total_limit)]
    if not quiet:
        callbacks.append(Progress())
    callbacks.extend(extra_callbacks)
    args = trainers.common_args(config, resolved, precision, str(rundir.checkpoints), bool(tok.eval), grad_ckpt)
    trainer = _build_trainer(config, model, base, resolved, args, tok, callbacks, speedups)
    output = trainer.train(resume_from_checkpoint=start_from)
    speed.restore(trainer.model, speedups)
    with rundir.saving_model() as folder:
        save_result(trainer.model, tok.tokenizer, folder, model_info(config))
    best = trainer.state.best_metric
    loss = logger.train_loss if logger.train_loss is not None else output.training_loss
    rundir.end_attempt(
        "completed", global_step=trainer.state.global_step, train_loss=loss, best_eval_loss=best,
        trainable_params=trainable, total_params=total, train_runtime_s=output.metrics.get("train_runtime"),
        resumed_from=start_from, warnings=warnings, best_checkpoint=trainer.state.best_model_checkpoint,
    )
    return TrainResult(rundir.path, rundir.model, "completed", trainer.state.global_step, loss,
                       best, trainable, total, start_from, warnings, trainer.model, tok.tokenizer)


def _build_trainer(config: Config, model: Any, base: Any, resolved: Any, args: dict[str, Any], tok: Any,
                   callbacks: list[Any], speedups: Any) -> Any:
    from tunesmith.tokenize import Collator
    from tunesmith.train import trainers

    collator = Collator(tok.tokenizer.pad_token_id, attn_implementation=base.config._attn_implementation,
                        padding_free=speedups.padding_free)
    if speedups.padding_free:
        args["include_num_input_tokens_seen"] = "all"  # there is no padding to leave out
    return trainers.build(model, config, resolved, args, tok, collator, callbacks, fused_loss=speedups.fused_loss,
                          padding_free=speedups.padding_free)


def _resume_point(rundir: RunDir, plan: resumes.Plan, say: Callable[[str], None]) -> str | None:
    """The checkpoint to continue from (the plan's, re-checked now), with metrics.jsonl cut to it."""
    from tunesmith.train import metrics

    if plan.kind == "fresh":
        say("training: starting at step 0")
        return None
    for removed in ckpt.discard_incomplete(rundir.checkpoints):
        say(f"discarded incomplete checkpoint {removed.name} (the run was killed while writing it)")
    done = ckpt.complete_checkpoints(rundir.checkpoints)
    if not done:
        raise RunDirError(f"{rundir.path}: the checkpoint to resume from disappeared ({plan.checkpoint})")
    step = ckpt.step_of(done[-1])
    cut = metrics.truncate(rundir.metrics, step) if rundir.metrics.is_file() else 0
    say(f"resume: starting at step {step} from {done[-1].name}"
        + (f" ({cut} metrics records after it, from the interrupted attempt, removed)" if cut else ""))
    return str(done[-1])


def _unchanged(rundir: RunDir, record: dict[str, Any]) -> TrainResult:
    return TrainResult(rundir.path, rundir.model, "unchanged", int(record.get("global_step") or 0),
                       record.get("train_loss"), record.get("best_eval_loss"),
                       int(record.get("trainable_params") or 0), int(record.get("total_params") or 0))
