"""Child side of the kill-anywhere test: one ``train.run`` attempt in a process the test SIGKILLs.

Children are forked from a forkserver that has imported torch/transformers/tunesmith once, so an
attempt starts in a fraction of a second instead of paying the import again. ``pause_after_unmark``
widens, by a sleep, the moment inside a checkpoint rotation between unmarking the old checkpoint
and deleting its files, so a kill can land there deterministically (the rotation logic itself is
the library's, unchanged).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import tunesmith

_CHECKS = sorted(p.stem for p in (Path(tunesmith.__file__).parent / "audit/checks").glob("[a-z]*.py"))
PRELOAD = ["torch", "transformers", "transformers.trainer", "peft", "tunesmith.train.run", "tunesmith.train.callbacks",
           "tunesmith.train.model", "tunesmith.train.trainers", "tunesmith.train.preflight", "tunesmith.tokenize",
           "tunesmith.audit", "tunesmith.audit.minhash", "tunesmith.audit.tokens",
           "tunesmith.train.artifacts", "transformers.models.llama.modeling_llama", "killrun",
           *(f"tunesmith.audit.checks.{name}" for name in _CHECKS)]


def attempt(raw: dict[str, Any], log_path: str, pause_after_unmark: float = 0.0) -> None:
    import torch

    from tunesmith.config import config_from_dict
    from tunesmith.train import checkpoints, run

    torch.set_num_threads(1)  # tiny model: one thread is fastest, and immune to a busy machine
    import gc

    gc.freeze()  # the preloaded libraries' objects: keeps accelerate's gc.collect() at train start short
    if pause_after_unmark:
        unmark = checkpoints.unmark

        def slow_unmark(folder: Any) -> None:
            unmark(folder)
            time.sleep(pause_after_unmark)

        checkpoints.unmark = slow_unmark
    t0 = time.perf_counter()
    with open(log_path, "a", encoding="utf-8") as log:
        def say(line: str) -> None:
            log.write(f"[{time.perf_counter() - t0:7.2f}s] {line}\n")
            log.flush()

        say("=== attempt")
        run(config_from_dict(raw), quiet=True, say=say)
        say("=== finished")
