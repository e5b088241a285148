"""The benchmark's own measuring instrument, loaded into every tool's process (TRL, LLaMA-Factory,
tunesmith) as a plain ``TrainerCallback``: it never trusts a tool's own token count or timer.

* real tokens: a forward pre-hook on the model's decoder (``model.get_decoder()``, which every
  tool calls with ``input_ids`` and its masks) counts, for every training forward, the positions
  whose 2D attention mask is 1 or, when a batch carries no 2D mask (packed / padding-free rows),
  whose input id is not the pad id (the benchmark models' pad token is a token no text contains);
  forwards without autograd (DPO reference log-probs, evaluation) are not counted;
* time: wall clock at every step's end; time to first step = end of step 1 minus the launch time
  the harness passes in ``BENCH_LAUNCH`` (so imports, data loading, audit, tokenization and model
  loading all count);
* peak RSS is taken by the harness (``os.wait4``), not here.

Depends on torch + transformers only, so it imports in every tool's venv.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from transformers import TrainerCallback


def real_tokens(kwargs: dict, pad_id: int) -> int:
    mask = kwargs.get("attention_mask")
    if mask is not None and getattr(mask, "dim", lambda: 0)() == 2:
        return int(mask.sum())
    ids = kwargs.get("input_ids")
    return int((ids != pad_id).sum()) if ids is not None else 0


class Probe(TrainerCallback):
    def __init__(self, result_path: str | Path, pad_id: int):
        self.path = Path(result_path)
        self.pad_id = pad_id
        self.launch = float(os.environ.get("BENCH_LAUNCH", time.time()))
        self.tokens: list[int] = []
        self.ends: list[float] = []
        self.losses: list[float] = []
        self._hooked = False

    def _hook(self, module, args, kwargs):  # noqa: ANN001
        import torch

        if module.training and self.tokens and torch.is_grad_enabled():  # not reference / eval forwards
            if args and "input_ids" not in kwargs:
                kwargs = {**kwargs, "input_ids": args[0]}
            self.tokens[-1] += real_tokens(kwargs, self.pad_id)

    def on_train_begin(self, args, state, control, model=None, **kwargs):  # noqa: ANN001
        if model is not None and not self._hooked:
            model.get_decoder().register_forward_pre_hook(self._hook, with_kwargs=True)
            self._hooked = True

    def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001
        self.tokens.append(0)

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
        self.ends.append(time.time())

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
        if logs and "loss" in logs:
            self.losses.append(float(logs["loss"]))

    def on_train_end(self, args, state, control, **kwargs):  # noqa: ANN001
        # tokens[k] were processed during step k+1 (ends[k]); throughput = steps 2..N
        steady_tokens = sum(self.tokens[1:len(self.ends)])
        steady_time = self.ends[-1] - self.ends[0] if len(self.ends) > 1 else float("nan")
        self.path.write_text(json.dumps({
            "steps": len(self.ends), "tokens_per_step": self.tokens, "first_step_s": self.ends[0] - self.launch,
            "steady_tokens": steady_tokens, "steady_s": steady_time,
            "tokens_per_s": steady_tokens / steady_time if steady_time > 0 else None,
            "total_s": self.ends[-1] - self.launch, "losses": self.losses,
        }))
