"""The loss watchdog on its own: spikes and overfitting are warned about, non-finite loss stops."""

from __future__ import annotations

import pytest
from transformers import TrainerControl, TrainerState

from tunesmith.train.callbacks import TrainingDiverged, Watchdog


def feed(dog: Watchdog, losses: list[float]) -> None:
    state, control = TrainerState(), TrainerControl()
    for step, loss in enumerate(losses, start=1):
        state.global_step = step
        dog.on_log(None, state, control, logs={"loss": loss, "grad_norm": 1.0, "learning_rate": 1e-4})


def test_spike_warns_with_the_step():
    warnings: list[tuple[str, str]] = []
    dog = Watchdog(1e-4, patience=3, warn=lambda kind, text: warnings.append((kind, text)))
    feed(dog, [2.0, 1.9, 1.8, 1.85, 1.7, 1.75, 9.0, 1.6])
    assert [k for k, _ in warnings] == ["spike"]
    assert "loss spike at step 7" in warnings[0][1] and "3x the running median" in warnings[0][1]


def test_steady_loss_does_not_warn():
    warnings: list[tuple[str, str]] = []
    dog = Watchdog(1e-4, patience=3, warn=lambda kind, text: warnings.append((kind, text)))
    feed(dog, [2.0, 1.9, 1.8, 1.85, 1.7, 1.75, 1.7, 1.6])
    assert warnings == []


def test_overfitting_warns_once_when_eval_rises_while_train_falls():
    warnings: list[tuple[str, str]] = []
    dog = Watchdog(1e-4, patience=2, warn=lambda kind, text: warnings.append((kind, text)))
    state, control = TrainerState(), TrainerControl()
    for train_loss, eval_loss in [(2.0, 1.5), (1.5, 1.6), (1.0, 1.7), (0.5, 1.8)]:
        feed(dog, [train_loss] * 3)
        dog.on_evaluate(None, state, control, metrics={"eval_loss": eval_loss})
    assert [k for k, _ in warnings] == ["overfitting"]
    assert "eval loss rose for 2 evaluations" in warnings[0][1]


def test_eval_and_train_falling_together_is_not_overfitting():
    warnings: list[tuple[str, str]] = []
    dog = Watchdog(1e-4, patience=2, warn=lambda kind, text: warnings.append((kind, text)))
    state, control = TrainerState(), TrainerControl()
    for train_loss, eval_loss in [(2.0, 1.9), (1.5, 1.6), (1.0, 1.3)]:
        feed(dog, [train_loss] * 3)
        dog.on_evaluate(None, state, control, metrics={"eval_loss": eval_loss})
    assert warnings == []


def test_nan_loss_stops_with_a_diagnosis():
    dog = Watchdog(3e-1, patience=3, warn=lambda kind, text: None)
    with pytest.raises(TrainingDiverged, match=r"(?s)became nan at step 3.*learning rate too high \(0.3\)"):
        feed(dog, [2.0, 1.9, float("nan")])
