"""Self-distillation rows against forgetting: general requests answered by the base model itself.

The pretrained profile's training rows all carry the run's system prompt and all ask for a label, a plan
or a spec-sheet value; fine-tuned on those alone, the model answers everything tersely ("What is the
capital of Japan? Answer in one word." -> "1. capital") and the forgetting probe drops. Mixing in the
base's own replies to general requests (``replay.yaml``, none a probe item) keeps its general behaviour
under that prompt. Replies come from the shared generation cache, so a second run only reads them.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import yaml

_PROMPTS = Path(__file__).with_name("replay.yaml")


@cache
def prompts() -> tuple[str, ...]:
    """The general requests of ``replay.yaml``."""
    return tuple(yaml.safe_load(_PROMPTS.read_text("utf-8"))["prompts"])


def write(path: Path, base_model: Path, system_prompt: str, max_new_tokens: int) -> tuple[Path, int]:
    """``path``: one chat row per request the base answered within ``max_new_tokens`` (greedy, the
    base's own template and ``system_prompt``, as training renders; one batch: a second, smaller one
    would cost as many decoding steps); returns it and how many rows."""
    from tunesmith import infer
    from tunesmith.data.records import Message
    from tunesmith.infer.cache import for_model

    loaded = infer.load(base_model)
    cache = for_model(loaded)  # the cache evaluation uses: a second run only reads the replies
    try:
        replies = infer.generate_details(loaded.model, loaded.tokenizer, [[Message("user", p)] for p in prompts()],
                                         eos_ids=loaded.eos_ids, system_prompt=system_prompt,
                                         max_new_tokens=max_new_tokens, batch_size=len(prompts()), cache=cache)
    finally:
        if cache is not None:
            cache.close()
    rows = [_row(p, r.text) for p, r in zip(prompts(), replies) if r.finish_reason == "stop" and r.text]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    return path, len(rows)


def _row(prompt: str, reply: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": reply}]}
