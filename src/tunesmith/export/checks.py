"""The checks every export passes: what was written, read back, behaves like the trained model.

- logits: the reloaded export's logits on the probe prompts against the trained model's
  (max |diff| relative to the largest |logit|, and top-1 agreement over every position); a quantised
  GGUF's against the trained model's with its weights rounded as the file stores them, what the
  quantisation costs against the trained model reported;
- template parity: the export's template renders the multi-turn probe conversation to exactly
  the string the training template renders;
- stop parity: the export stops on exactly the training end-of-turn tokens;
- tokenizer parity: the export's tokenizer gives the training ids on the probe texts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Check:
    name: str
    passed: bool
    detail: str
    values: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def logits_check(name: str, reference: list[Any], actual: list[Any], tolerance: float, what: str) -> Check:
    """Pass when max |diff| <= ``tolerance`` x the largest |reference logit|; top-1 agreement is reported."""
    diffs = [float((a - r).abs().max()) for a, r in zip(actual, reference)]
    scale = max(float(r.abs().max()) for r in reference)
    agree = sum(int((a.argmax(-1) == r.argmax(-1)).sum()) for a, r in zip(actual, reference))
    positions = sum(r.shape[0] for r in reference)
    max_diff, bound = max(diffs), tolerance * max(scale, 1.0)
    values = {"max_abs_diff": max_diff, "logit_scale": scale, "tolerance": bound, "top1_agreement": agree / positions,
              "positions": positions, "prompts": len(reference)}
    detail = (f"{what}: max |logit diff| {max_diff:.3g} (logits up to {scale:.3g}; bound {bound:.3g}), "
              f"top-1 agreement {agree}/{positions} positions on {len(reference)} probes")
    return Check(name, max_diff <= bound, detail, values)


def stored_logits_check(name: str, reference: list[Any], stored: list[Any], actual: list[Any], tolerance: float,
                        what: str) -> Check:
    """A quantised export: pass when max |diff| from ``stored`` (the trained model with its weights rounded as the
    file stores them) <= ``tolerance`` x the largest |reference logit| (at least 1); what the quantisation costs
    against the trained model ``reference`` (max |diff|, top-1 agreement) is reported, not judged."""
    cost = logits_check(name, reference, actual, float("inf"), what).values
    off = max(float((a - s).abs().max()) for a, s in zip(actual, stored))
    bound = tolerance * max(cost["logit_scale"], 1.0)
    agree = round(cost["top1_agreement"] * cost["positions"])
    values = {**cost, "tolerance": bound, "stored_max_abs_diff": off}
    detail = (f"{what}: max |logit diff| {off:.3g} from the trained model rounded as the file stores it (bound "
              f"{bound:.3g}); the quantisation costs max |logit diff| {cost['max_abs_diff']:.3g} (logits up to "
              f"{cost['logit_scale']:.3g}), top-1 agreement {agree}/{cost['positions']} positions on "
              f"{cost['prompts']} probes")
    return Check(name, off <= bound, detail, values)


def template_check(name: str, expected: str, actual: str, what: str) -> Check:
    """Pass when the export renders exactly the training prompt; the detail shows where they part."""
    if expected == actual:
        return Check(name, True, f"{what} renders the multi-turn probe exactly as training ({len(expected)} chars)")
    at = next((i for i, (a, b) in enumerate(zip(expected, actual)) if a != b), min(len(expected), len(actual)))
    window = slice(max(0, at - 20), at + 30)
    return Check(name, False, f"{what} renders differently from the training template from character {at}: "
                              f"training {expected[window]!r} vs export {actual[window]!r}",
                 {"expected": expected, "actual": actual})


def stops_check(name: str, expected: set[str], actual: set[str], what: str) -> Check:
    """Pass when the export stops on exactly the training end-of-turn tokens."""
    missing, extra = sorted(expected - actual), sorted(actual - expected)
    if not missing and not extra:
        return Check(name, True, f"{what} stop on {sorted(expected)}, the training end-of-turn tokens",
                     {"stops": sorted(expected)})
    parts = ([f"missing {missing} (generation would run past the end of the turn)"] if missing else []) + (
        [f"extra {extra}"] if extra else [])
    return Check(name, False, f"{what}: {'; '.join(parts)}; training ends turns with {sorted(expected)}",
                 {"expected": sorted(expected), "actual": sorted(actual)})


def tokenizer_check(name: str, training: Any, exported: Any, texts: list[str], what: str) -> Check:
    """Pass when ``exported`` splits every text into the ids ``training`` does (no special tokens added)."""
    for text in texts:
        want = training(text, add_special_tokens=False)["input_ids"]
        got = exported(text, add_special_tokens=False)["input_ids"]
        if want != got:
            return Check(name, False, f"{what} tokenizes {text[:40]!r} differently: {want[:12]} vs {got[:12]}",
                         {"text": text, "expected": want, "actual": got})
    return Check(name, True, f"{what} gives the training ids on {len(texts)} probe texts")
