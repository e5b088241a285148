"""``train.run(config)``: the whole training job around the trainer.

Order: decide what to do with ``output_dir`` (fresh / resume / extend / nothing, see
``resume.py``; no heavy import, no data read) -> preflight checks that need the model ->
data, audit, tokenization (the tokenize cache is the only thing written to ``output_dir``) ->
the memory check on those token lengths -> a resume must match the run's recorded fingerprints ->
claim the directory -> train -> save ``model/`` atomically -> record the attempt in run.json.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from tunesmith.config import Config
from tunesmith.config.adapters import gradient_checkpointing
from tunesmith.errors import TunesmithError
from tunesmith.train import checkpoints as ckpt
from tunesmith.train import resume as resumes
from tunesmith.train import world as worlds
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
    from tunesmith.train.context import fit_default_length

    world = worlds.join(config)  # one process, or this rank of a launched job (see world.py)
    config = fit_default_length(config, say if world.is_main else _silent)
    rundir = RunDir(Path(config.output_dir), writer=world.is_main)
    say = say if world.is_main else _silent
    plan = resumes.decide(config, rundir.path, resume, overwrite, world.world_size)
    world.barrier()  # every rank has read the directory before rank 0 changes it
    if plan.message:
        say(plan.message)
    if plan.kind == "done":
        return _unchanged(rundir, plan.record)
    from tunesmith.models import resolve as resolve_base
    from tunesmith.train import preflight

    with world.main_first():
        resolve_base(config.base_model, say=say)  # a GGUF / catalogue base is converted (once, cached) up front
    tokenizer = preflight.run(config)  # config checks that need the model's files (not its weights)
    try:
        return _prepare_and_train(config, rundir, plan, tokenizer, quiet, say, list(callbacks), world)
    except BaseException as exc:
        if rundir.begun:  # a refused resume leaves the run's record as it was
            rundir.end_attempt("failed", error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        raise


def _silent(text: str) -> None:
    """``say`` on ranks other than 0: rank 0 speaks for the job."""


def _prepare_and_train(config: Config, rundir: RunDir, plan: resumes.Plan, tokenizer: Any, quiet: bool,
                       say: Callable[[str], None], extra_callbacks: list[Any],
                       world: worlds.World = worlds.World()) -> TrainResult:
    from tunesmith import data, tokenize
    from tunesmith.config.defaults import resolve
    from tunesmith.models.precision import choose
    from tunesmith.train import preflight

    contamination = _contamination(config, say) if world.is_main else None
    with world.main_first():  # rank 0 reads, audits and tokenizes; the others then read its cache
        dataset = data.run(config)
        memo = tokenize.EncodeMemo()  # the audit's encodings, reused by tokenization
        audit_stats = _audit(config, dataset, tokenizer, say, memo) if world.is_main else {}
        tok = tokenize.run(config, dataset, tokenizer, memo)
        del memo
    if tok.cache_hit:
        say("tokenized data: reused cache (same data, tokenizer and settings)")
    if not world.is_main:
        print(f"rank {world.rank}: " + ("tokenized data from rank 0's cache" if tok.cache_hit else
              "tokenized itself: rank 0's cache is not on this node's file system (share output_dir)"), flush=True)
    _require_rows(config, tok, len(dataset.eval))  # stop before the weights are loaded and output_dir is claimed
    preflight.check_validation(config, len(dataset.eval), dataset.validation.get("why"))
    _check_fit(config, dataset, tok, say)
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
    lint = _lint(config, resolved.values, tok.stats.get("rows", len(tok.train)), len(tok.train), say)
    record = start_record(config, facts, tok.stats, resolved.values)
    record["precision"] = precision.name
    record["validation"] = dataset.validation
    record["context"] = _context(config, audit_stats, say)
    record["lint"] = {"warnings": lint, "skipped": list(config.lint_skip)} if config.lint_skip else lint
    if contamination is not None:
        record["contamination"] = contamination
    if config.modules_to_save:  # what each name trains: PEFT matches every module whose name ends with it
        record["modules_to_save"] = preflight.modules_to_save_matches(config)
    if dataset.validation.get("source") == "default":
        say(f"validation: {dataset.validation['rows']} rows held out ({dataset.validation['why']})")
    if dataset.mix:
        record["data_mix"] = {"temperature": config.mix_temperature, "datasets": dataset.mix}
    base_folder = _base_folder(config)
    if base_folder != config.base_model:
        record["base_model_folder"] = base_folder
    rundir.update_run(**record)
    samples = (dataset.eval or dataset.train, "validation" if dataset.eval else "train")
    return _train(config, rundir, tok, resolved, precision, plan, quiet, say, extra_callbacks, samples, world)


# what to change when every training row was left out for this reason (tokenize's drop reasons)
_NO_ROWS_HINTS = {
    "too_long": "raise sequence_len, or set truncation: truncate_prompt to keep the replies and cut the prompts",
    "no_trained_token": "check train_on_turns / loss_weight: no row has an assistant token to learn",
    "template": "the chat template cannot render these rows (see tunesmith data preview)",
    "empty_text": "the text rows are empty",
}


def _require_rows(config: Config, tok: Any, eval_rows: int = 0) -> None:
    """Stop with the reasons when tokenization left no training row (every row too long, no trained token,
    ...): training would fail inside the data loader with an internal error. The same for validation rows when
    there were some: evaluation, early stopping and the best checkpoint would silently be off."""
    if eval_rows and not len(tok.eval):
        raise TunesmithError(f"no validation rows left after tokenization: all {eval_rows} were left out "
                             f"({tok.stats.get('eval_dropped_rows', eval_rows)} dropped, e.g. longer than sequence_len "
                             f"{config.sequence_len}); evaluation, early stopping and the best checkpoint would be off: "
                             "raise sequence_len, or give validation rows that fit")
    if len(tok.train):
        return
    dropped: dict[str, int] = tok.stats.get("dropped", {})
    if not dropped:
        raise TunesmithError(f"no training rows: {', '.join(tok.sources) or 'the data'} holds none")
    counts = ", ".join(f"{n} {reason}" for reason, n in sorted(dropped.items(), key=lambda kv: -kv[1]))
    first = (tok.stats.get("drop_examples") or [""])[0]
    hints = "; ".join(_NO_ROWS_HINTS[r] for r in dropped if r in _NO_ROWS_HINTS)
    raise TunesmithError(f"no training rows left after tokenization: all {sum(dropped.values())} were left out "
                         f"({counts}; first: {first}){'; ' + hints if hints else ''}")


def _check_fit(config: Config, dataset: Any, tok: Any, say: Callable[[str], None]) -> None:
    """The plan's memory estimate vs the device, from the lengths this run has just tokenized (the
    data is not read or tokenized a second time); PlanError when it would not fit."""
    from tunesmith.plan import check_fit
    from tunesmith.plan.tokens import from_tokenized

    kind = dataset.train[0].kind if len(dataset.train) else "chat"
    check_fit(config, say, from_tokenized(config, tok, kind))


def _contamination(config: Config, say: Callable[[str], None]) -> dict[str, Any] | None:
    """The evaluation's contamination guard, before training: every ``eval_tasks`` file against the
    training sets (exact + near). ``contamination.action: fail`` stops here; otherwise a warning says
    how many eval rows ``evaluate`` will leave out (``exclude``) or only list (``report``)."""
    from tunesmith.data.ingest import collect
    from tunesmith.audit import contamination

    if not config.contamination.check or not config.dataset_tasks:
        return None
    tasks = {spec.name: collect([spec.dataset()], "sft").records for spec in config.dataset_tasks}
    report = contamination.check(config, tasks)
    if report.hits:
        first = report.hits[0]
        say(f"warning: {len(report.hits)} of {report.checked} eval task rows also stand in the training data "
            f"(e.g. {first.source}: {first.kind} copy of {first.train_source}); evaluate will "
            f"{'leave them out' if report.action == 'exclude' else 'only list them'} (contamination.action: "
            f"{report.action}); remove them from one side")
    summary = report.to_dict()
    summary["hits"] = summary["hits"][:20]
    return summary


def _lint(config: Config, values: dict[str, Any], rows: int, epoch_rows: int, say: Callable[[str], None]) -> list[str]:
    from tunesmith.train import lint, preflight

    from tunesmith.config.methods import method_spec

    if config.max_steps > 0:  # the resolved num_epochs above is not what runs
        epochs = lint.effective_epochs(config, values, epoch_rows)
        say(f"  max_steps = {config.max_steps} sets the length: {epochs or 0:.3g} epochs of {epoch_rows:,} rows "
            "(num_epochs is not used)")
    found = lint.check(config, values, rows, epoch_rows=epoch_rows)
    found += preflight.modules_to_save_warnings(config, preflight.modules_to_save_matches(config))
    if config.sample_packing and not method_spec(config.method).packing:  # else ignored without a word
        found.append(f"sample_packing: {config.method} does not pack rows (each row is batched on its own); the "
                     "setting has no effect")
    for line in found:
        say(f"warning: {line}")
    return found


def _context(config: Config, audit_stats: dict[str, Any], say: Callable[[str], None]) -> dict[str, Any]:
    from tunesmith.train import context

    window = context.of(config)
    warning = context.length_warning(window, audit_stats)
    if warning:
        say(f"warning: {warning}")
    return window.record(warning)


def _base_folder(config: Config) -> str:
    from tunesmith.models import resolve as resolve_base

    return resolve_base(config.base_model)


def _audit(config: Config, dataset: Any, tokenizer: Any, say: Callable[[str], None],
           memo: Any = None) -> dict[str, Any]:
    from tunesmith import audit

    report = audit.run(config, data=dataset, tokenizer=tokenizer, memo=memo)
    report.enforce(config.audit.fail_on)
    for finding in report.findings:
        if finding.severity in ("error", "warning"):
            say(f"audit {finding.severity}: {finding.check}: {finding.message}")
    return report.stats


def _train(config: Config, rundir: RunDir, tok: Any, resolved: Any, precision: Any, plan: resumes.Plan,
           quiet: bool, say: Callable[[str], None], extra_callbacks: list[Any],
           samples: tuple[Sequence[Any], str], world: worlds.World) -> TrainResult:
    from transformers import set_seed

    from tunesmith.train import model as models
    from tunesmith.train import speed, trainers, trunk
    from tunesmith.train.callbacks import CompletionMarker, MetricsLogger, Progress, ScheduleRecord, Watchdog

    warnings: list[str] = []

    def warn(kind: str, text: str) -> None:
        warnings.append(text)
        logger.write({"warning": kind, "message": text})
        say(f"warning: {text}")

    grad_ckpt = gradient_checkpointing(config)
    set_seed(config.seed)  # adapter initialisation must be reproducible, not just the data order
    base = models.load_base(config)
    model = models.attach_adapter(base, config, resolved, grad_ckpt)
    speedups = speed.choose(config, base, model, precision)
    speed.prepare(base, model, speedups)
    rundir.update_run(optimisations=speedups.record())
    trainable, total = models.parameter_counts(model)
    say(f"parameters: {trainable:,} trainable of {total:,} ({100 * trainable / max(total, 1):.3f}%)")
    start_from = _resume_point(rundir, plan, say, world)
    logger = MetricsLogger(rundir.metrics, from_step=ckpt.step_of(Path(start_from)) if start_from else 0,
                           active=world.is_main)
    callbacks: list[Any] = [logger, Watchdog(resolved["learning_rate"], config.early_stopping_patience or 3, warn),
                            CompletionMarker(config.save_total_limit, world), ScheduleRecord(rundir.update_run, world)]
    if not quiet and world.is_main:
        callbacks.append(Progress())
    callbacks.extend(_sampler(config, samples, tok, logger.write, say, precision))
    callbacks.extend(extra_callbacks)
    args = trainers.common_args(config, resolved, precision, str(rundir.checkpoints), bool(tok.eval), grad_ckpt)
    args.update(worlds.trainer_args(config, world))
    trainer = _build_trainer(config, model, base, resolved, args, tok, callbacks, speedups)
    cached = trunk.setup(trainer, config, model, speedups, tok.stats, resolved["num_epochs"], len(tok.train),
                         world.world_size, say)
    rundir.update_run(trunk_cache=cached.record())
    output = trainer.train(resume_from_checkpoint=start_from)
    rundir.update_run(trunk_cache=trunk.finish(trainer, cached))
    speed.restore(trainer.model, speedups)
    _save_model(trainer, tok, config, rundir, world)
    best = trainer.state.best_metric
    loss = logger.train_loss if logger.train_loss is not None else output.training_loss
    rundir.end_attempt(
        "completed", global_step=trainer.state.global_step, train_loss=loss, best_eval_loss=best,
        trainable_params=trainable, total_params=total, train_runtime_s=output.metrics.get("train_runtime"),
        resumed_from=start_from, warnings=warnings, best_checkpoint=trainer.state.best_model_checkpoint,
    )
    return TrainResult(rundir.path, rundir.model, "completed", trainer.state.global_step, loss,
                       best, trainable, total, start_from, warnings, trainer.model, tok.tokenizer)


def _sampler(config: Config, samples: tuple[Sequence[Any], str], tok: Any, write: Callable[[dict[str, Any]], None],
             say: Callable[[str], None], precision: Any) -> list[Any]:
    """The sample-generations callback (none for methods without chat prompts or ``sample_generations: 0``)."""
    from tunesmith.tokenize import end_of_turn_ids
    from tunesmith.train.samples import SampleGenerations, prompts, reply_budget

    from tunesmith.config.methods import method_spec

    records, source = samples
    if method_spec(config.method).model != "causal_lm":  # a reward model scores, it does not generate
        return []
    conversations = prompts(records, config.sample_generations) if config.sample_generations else []
    if not conversations or not tok.tokenizer.chat_template:
        return []
    return [SampleGenerations(tok.tokenizer, conversations, end_of_turn_ids(tok.tokenizer), write, say,
                              source=source, system_prompt=config.system_prompt, per_run=None if source == "validation" else 4,
                              max_new_tokens=reply_budget(tok.tokenizer, records, config.sample_generations),
                              autocast=precision.autocast_dtype)]


def _save_model(trainer: Any, tok: Any, config: Config, rundir: RunDir, world: worlds.World) -> None:
    """rank 0 saves ``model/``; with several ranks the full weights are gathered from all of them first
    (FSDP / ZeRO-3 hold only a shard each: saving a shard would write partial or empty tensors)."""
    from tunesmith.train.artifacts import model_info, save_result

    model, state_dict = trainer.model, None
    if world.distributed:
        state_dict = trainer.accelerator.get_state_dict(trainer.model_wrapped)  # a collective: every rank
        model = trainer.accelerator.unwrap_model(trainer.model)
    if world.is_main:
        with rundir.saving_model() as folder:
            save_result(model, tok.tokenizer, folder, model_info(config), state_dict=state_dict)
    world.barrier()


def _build_trainer(config: Config, model: Any, base: Any, resolved: Any, args: dict[str, Any], tok: Any,
                   callbacks: list[Any], speedups: Any) -> Any:
    from tunesmith.tokenize import Collator
    from tunesmith.train import trainers

    collator = Collator(tok.tokenizer.pad_token_id, attn_implementation=base.config._attn_implementation,
                        padding_free=speedups.padding_free)
    if speedups.padding_free:
        args["include_num_input_tokens_seen"] = "all"  # there is no padding to leave out
    weighted = bool(tok.train) and "loss_weights" in tok.train[0]
    return trainers.build(model, config, resolved, args, tok, collator, callbacks, fused_loss=speedups.fused_loss,
                          padding_free=speedups.padding_free, weighted=weighted)


def _resume_point(rundir: RunDir, plan: resumes.Plan, say: Callable[[str], None],
                  world: worlds.World = worlds.World()) -> str | None:
    """The checkpoint to continue from (the plan's, re-checked now), with metrics.jsonl cut to it."""
    from tunesmith.train import metrics

    if plan.kind == "fresh":
        say("training: starting at step 0")
        return None
    if world.is_main:
        for removed in ckpt.discard_incomplete(rundir.checkpoints):
            say(f"discarded incomplete checkpoint {removed.name} (the run was killed while writing it)")
    world.barrier()
    done = ckpt.complete_checkpoints(rundir.checkpoints)
    if not done:
        raise RunDirError(f"{rundir.path}: the checkpoint to resume from disappeared ({plan.checkpoint})")
    step = ckpt.step_of(done[-1])
    cut = metrics.truncate(rundir.metrics, step) if rundir.metrics.is_file() and world.is_main else 0
    say(f"resume: starting at step {step} from {done[-1].name}"
        + (f" ({cut} metrics records after it, from the interrupted attempt, removed)" if cut else ""))
    return str(done[-1])


def _unchanged(rundir: RunDir, record: dict[str, Any]) -> TrainResult:
    return TrainResult(rundir.path, rundir.model, "unchanged", int(record.get("global_step") or 0),
                       record.get("train_loss"), record.get("best_eval_loss"),
                       int(record.get("trainable_params") or 0), int(record.get("total_params") or 0))
