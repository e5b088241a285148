"""Trainer callbacks: metrics.jsonl, loss watchdog, progress display, checkpoint completion."""

from __future__ import annotations

import json
import math
import statistics
import time
from collections import deque
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from tunesmith.errors import TunesmithError
from tunesmith.train import checkpoints as ckpt
from tunesmith.config.yaml_load import load_table


class TrainingDiverged(TunesmithError):
    """Loss or gradient norm became NaN/inf: the run was stopped."""


@cache
def _diagnoses() -> dict[str, Any]:
    return load_table(resources.files("tunesmith.train").joinpath("diagnoses.yaml").read_text("utf-8"))


def diagnosis(kind: str, **facts: Any) -> str:
    entry = _diagnoses()[kind]
    causes = "\n".join(f"  - {c.format(**facts)}" for c in entry["causes"])
    return f"{entry['title'].format(**facts)}\nlikely causes:\n{causes}"


class MetricsLogger(TrainerCallback):
    """Appends every logged step (loss, lr, grad norm, tokens/s) and every warning to metrics.jsonl.

    ``from_step`` is the step this attempt resumed from: the final ``train_loss`` record (and
    :attr:`train_loss`) is then the whole run's mean, not just this attempt's.
    """

    def __init__(self, path: Path, from_step: int = 0, active: bool = True):
        self.path = path
        self.active = active  # False on ranks other than 0: rank 0 writes the run directory
        self.from_step = from_step
        self.step = from_step
        self.train_loss: float | None = None
        self._last: tuple[float, int] | None = None

    def write(self, record: dict[str, Any]) -> None:
        if not self.active:
            return
        record = record if "step" in record else {"step": self.step, **record}
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")

    def on_log(self, args, state, control, logs=None, **kwargs):  # type: ignore[no-untyped-def]
        from tunesmith.train.metrics import read, run_loss

        if not self.active:
            return control
        now, tokens = time.perf_counter(), int(state.num_input_tokens_seen or 0)
        self.step = state.global_step
        record = {"step": state.global_step, "epoch": state.epoch, **(logs or {})}
        if self._last is not None and tokens > self._last[1] and now > self._last[0]:
            record["tokens_per_s"] = (tokens - self._last[1]) / (now - self._last[0])
        self._last = (now, tokens)
        if "train_loss" in record:
            session = float(record["train_loss"])
            whole = run_loss(read(self.path), self.from_step, session, state.global_step - self.from_step)
            record["train_loss"], self.train_loss = whole, whole
            if self.from_step:
                record["attempt_train_loss"] = session
        self.write(record)
        return control

    def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        return self._log_with_save(control)

    def on_epoch_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        return self._log_with_save(control)

    @staticmethod
    def _log_with_save(control):  # type: ignore[no-untyped-def]
        """A checkpoint's step is always logged: the Trainer does not save the loss of the steps since
        the last log, so a resume could not count them in the whole run's ``train_loss``. Set on every
        rank (the log gathers the loss across ranks)."""
        if control.should_save:
            control.should_log = True
        return control


class Watchdog(TrainerCallback):
    """Stops on NaN/inf, warns on loss spikes, on overfitting, on a loss that does not fall by step
    max(50, 10 % of the steps) (``plateau``) and on a loss near 0 within the first steps (``trivial``)."""

    def __init__(self, learning_rate: float, patience: int, warn: Any, spike_factor: float = 3.0,
                 min_drop: float = 0.05, trivial_loss: float = 0.02, early_steps: int = 10):
        self.learning_rate = learning_rate
        self.patience = patience
        self.warn = warn
        self.factor = spike_factor
        self.min_drop, self.trivial_loss, self.early_steps = min_drop, trivial_loss, early_steps
        self.recent: deque[float] = deque(maxlen=50)
        self.first: list[float] = []
        self.evals: list[tuple[float, float]] = []
        self.warned_overfit = False
        self.warned: set[str] = set()
        self.zero_grads = 0

    def on_log(self, args, state, control, logs=None, **kwargs):  # type: ignore[no-untyped-def]
        logs = logs or {}
        for key in ("loss", "grad_norm"):
            value = logs.get(key)
            if value is not None and not math.isfinite(float(value)):
                raise TrainingDiverged(
                    diagnosis("non_finite", value=value, step=state.global_step, learning_rate=self.learning_rate)
                )
        self._check_stalled(logs, state.global_step)
        loss = logs.get("loss")
        if loss is not None:
            if len(self.recent) >= 5:
                median = statistics.median(self.recent)
                if median > 0 and loss > self.factor * median:
                    self.warn("spike", diagnosis("spike", step=state.global_step, loss=loss, factor=self.factor, median=median))
            self.recent.append(float(loss))
            self._check_learning(float(loss), state.global_step, int(state.max_steps or 0))
        return control

    def _check_learning(self, loss: float, step: int, max_steps: int) -> None:
        if len(self.first) < 5:
            self.first.append(loss)
        if step <= self.early_steps and loss < self.trivial_loss and "trivial" not in self.warned:
            self.warned.add("trivial")
            self.warn("trivial", diagnosis("trivial", loss=loss, step=step))
        check_at = max(50, -(-max_steps // 10))
        if step < check_at or "plateau" in self.warned or len(self.recent) < 5 or len(self.first) < 5:
            return
        self.warned.add("plateau")  # checked once, at the first logged step from check_at on
        start, now = statistics.mean(self.first), statistics.mean(list(self.recent)[-5:])
        if start > 0 and now > (1 - self.min_drop) * start:
            self.warn("plateau", diagnosis("plateau", now=now, step=step, drop=self.min_drop, start=start,
                                           learning_rate=self.learning_rate))

    def _check_stalled(self, logs: dict[str, Any], step: int, limit: int = 3) -> None:
        if "grad_norm" not in logs:
            return
        moving = float(logs["grad_norm"]) != 0.0 or float(logs.get("learning_rate", 1.0)) == 0.0
        self.zero_grads = 0 if moving else self.zero_grads + 1
        if self.zero_grads >= limit:
            raise TrainingDiverged(diagnosis("stalled", steps=self.zero_grads, learning_rate=self.learning_rate))

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):  # type: ignore[no-untyped-def]
        eval_loss = (metrics or {}).get("eval_loss")
        if eval_loss is None:
            return control
        train_loss = statistics.mean(self.recent) if self.recent else float("nan")
        self.evals.append((float(eval_loss), train_loss))
        window = self.evals[-(self.patience + 1):]
        if len(window) == self.patience + 1 and not self.warned_overfit:
            eval_up = all(b[0] > a[0] for a, b in zip(window, window[1:]))
            train_down = window[-1][1] < window[0][1]
            if eval_up and train_down:
                self.warned_overfit = True
                self.warn("overfitting", diagnosis("overfitting", patience=self.patience, eval_loss=eval_loss))
        return control


class Progress(TrainerCallback):
    """A rich progress bar with step, loss, tokens/s and ETA."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, Progress as RichProgress, TextColumn, TimeRemainingColumn

        self.bar = RichProgress(
            TextColumn("step {task.completed}/{task.total}"), BarColumn(),
            TextColumn("{task.fields[info]}"), TimeRemainingColumn(),
        )
        self.task: Any = None
        self._t0 = 0.0
        self._tok0 = 0

    def on_train_begin(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        self.bar.start()
        self.task = self.bar.add_task("train", total=state.max_steps, completed=state.global_step, info="")
        self._t0, self._tok0 = time.perf_counter(), int(state.num_input_tokens_seen or 0)

    def on_log(self, args, state, control, logs=None, **kwargs):  # type: ignore[no-untyped-def]
        if self.task is not None and logs and "loss" in logs:
            dt = max(time.perf_counter() - self._t0, 1e-9)
            tps = (int(state.num_input_tokens_seen or 0) - self._tok0) / dt
            self.bar.update(self.task, info=f"loss {logs['loss']:.4f}  {tps:,.0f} tok/s")

    def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        if self.task is not None:
            self.bar.update(self.task, completed=state.global_step)

    def on_train_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        self.bar.stop()


class CompletionMarker(TrainerCallback):
    """Marks each checkpoint complete after the Trainer has written all of it, then rotates
    (``save_total_limit``; the Trainer itself must run with ``save_total_limit=None``)."""

    def __init__(self, save_total_limit: int | None = None, world: Any = None):
        self.limit = save_total_limit
        self.world = world

    def on_save(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if self.world is not None:
            self.world.barrier()  # every rank has written its part (its RNG state) before the marker
            if not self.world.is_main:
                self.world.barrier()
                return control
        if folder.is_dir():
            world_size = self.world.world_size if self.world is not None else 1
            ckpt.mark_complete(folder, state.global_step, world_size, per_rank_state=not args.save_only_model)
            ckpt.rotate(Path(args.output_dir), self.limit, state.best_model_checkpoint)
        if self.world is not None:
            self.world.barrier()
        return control


class ScheduleRecord(TrainerCallback):
    """Records the effective batch and the learning-rate schedule in run.json (rank 0) once the
    Trainer knows the step count, so runs at different world sizes can be compared."""

    def __init__(self, update_run: Any, world: Any):
        self.update_run = update_run
        self.world = world

    schedule: dict[str, Any] | None = None

    def on_train_begin(self, args, state, control, model=None, train_dataloader=None,  # type: ignore[no-untyped-def]
                       **kwargs):
        sharded = _sharded_parameters(model) if model is not None else 0
        if self.world.backend == "fsdp" and not sharded:  # every rank checks its own model
            raise TunesmithError("distributed.backend: fsdp was asked for, but the engine did not shard the model "
                                 "(no parameter is an FSDP2 shard): stopping rather than training unsharded")
        if not self.world.is_main:
            return control
        scheduler = getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)
        self.schedule = {
            "world_size": args.world_size, "backend": self.world.backend,
            "micro_batch_size": args.per_device_train_batch_size,
            "gradient_accumulation_steps": args.gradient_accumulation_steps,
            "effective_batch": args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size,
            "total_steps": state.max_steps, "warmup_steps": args.get_warmup_steps(state.max_steps),
            "learning_rate": args.learning_rate, "lr_scheduler": str(scheduler),
            "sharded_parameters": sharded,  # FSDP2: parameters held as DTensor shards (0 under DDP)
            # the epochs the steps amount to (max_steps decides them when set, whatever num_epochs says)
            "epochs": _epochs(state.max_steps, train_dataloader, args.gradient_accumulation_steps),
        }
        self.update_run(schedule=self.schedule)
        return control

    def on_train_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        if self.world.is_main and self.schedule is not None:  # fewer than planned after an early stop
            self.update_run(schedule={**self.schedule, "epochs_trained": round(float(state.epoch or 0), 4)})
        return control


def _epochs(total_steps: int, dataloader: Any, accumulation: int) -> float | None:
    """``total_steps`` in epochs: over the optimizer steps of one pass of ``dataloader`` (as the Trainer counts)."""
    try:
        per_epoch = max(math.ceil(len(dataloader) / accumulation), 1)
    except TypeError:  # no dataloader, or one without a length
        return None
    return round(total_steps / per_epoch, 4)


def _sharded_parameters(model: Any) -> int:
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:
        return 0
    return sum(isinstance(p, DTensor) for p in model.parameters())
