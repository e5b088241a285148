"""``tunesmith advise``: prompting, RAG, fine-tuning or FT+RAG from the seed's decision tables.

The questions, rules and outcomes are data (``advise.yaml``); ``decide(answers)`` applies them
and, when the outcome involves training, builds a starter config for ``tunesmith train``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import yaml

from tunesmith.errors import TunesmithError
from tunesmith.errors import did_you_mean
from tunesmith.config.yaml_load import load_table


class AdviseError(TunesmithError):
    """An answers file is missing a key or gives a value that is not one of the choices."""


@cache
def tables() -> dict[str, Any]:
    return load_table(resources.files("tunesmith.plan").joinpath("advise.yaml").read_text("utf-8"))


@dataclass
class Advice:
    outcome: str
    summary: str
    reasons: list[str]
    answers: dict[str, str]
    starter: dict[str, Any] | None = None
    starter_reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "summary": self.summary, "reasons": self.reasons, "answers": self.answers,
                "starter_config": self.starter, "starter_reasons": self.starter_reasons}


def questions(training: bool | None = None) -> list[dict[str, Any]]:
    """The questions in order: ``training=False`` the decision ones, True only the starter-config ones."""
    qs = tables()["questions"]
    if training is None:
        return qs
    return [q for q in qs if (q.get("when") == "training") == training]


def check_answer(question: dict[str, Any], value: Any, where: str) -> str:
    """The answer as a choice key (or free text); a wrong one is an error naming the key and the choices."""
    key = question["key"]
    if "text" in question:
        if value is None or str(value).strip() == "":
            return str(question["text"])
        return str(value)
    choices = [str(c) for c in question["choices"]]
    text = str(value).lower() if isinstance(value, bool) is False else ("yes" if value else "no")
    if text in choices:
        return text
    if value is None:
        raise AdviseError(f"{where}{key}: missing (one of {', '.join(choices)})")
    hint = did_you_mean(text, choices, 0.5)
    raise AdviseError(f"{where}{key}: {value!r} is not one of {', '.join(choices)}{hint}")


def decide(answers: dict[str, str]) -> Advice:
    """Apply the rules to validated answers (choice keys)."""
    t = tables()
    decided: dict[str, tuple[bool, str]] = {}
    for rule in t["rules"]:
        if all(answers.get(k) in [str(v) for v in values] for k, values in rule["when"].items()):
            for what in ("fine_tune", "rag"):
                if what in rule and what not in decided:
                    decided[what] = (bool(rule[what]), rule["reason"].format(**answers))
    fine_tune = decided.get("fine_tune", (False, ""))[0]
    rag = decided.get("rag", (False, ""))[0]
    if not rag:
        decided.setdefault("rag", (False, "the knowledge is stable and needs no citations: no retrieval needed"))
    outcome = next(name for name, o in t["outcomes"].items() if o["fine_tune"] == fine_tune and o["rag"] == rag)
    reasons = [reason for _, reason in decided.values() if reason]
    return Advice(outcome, t["outcomes"][outcome]["summary"], reasons, dict(answers))


def starter_config(advice: Advice, gpu: str | None = None) -> tuple[dict[str, Any], list[str]]:
    """A config for `tunesmith train` (method from the data's kind, adapter from its size)."""
    from tunesmith.plan.recommend import size_rule

    s = tables()["starter"]
    a = advice.answers
    kind = s["data_kind"][a["data_kind"]]
    rows = s["rows"].get(a["labelled_examples"], 500)
    record_kind = {"chat": "sft", "rag": "sft", "preference": "preference", "text": "text"}[a["data_kind"]]
    rule = size_rule(record_kind, rows, 0 if record_kind != "text" else 10**6)
    config: dict[str, Any] = {
        "base_model": a["base_model"], "method": kind["method"], "adapter": rule["adapter"],
        "datasets": [{"path": a["data_path"], "type": kind["type"]}], **s["fixed"],
    }
    if gpu:
        config["hardware"] = {"gpu": gpu, "gpus": 1}
    reasons = [rule["reason"], "learning rate, epochs, LoRA r/alpha/dropout and warmup are left to tunesmith's "
               "defaults for the data size (printed by `tunesmith train` and `tunesmith plan`)"]
    return config, reasons


def dump(config: dict[str, Any]) -> str:
    header = "# Starter config written by `tunesmith advise`; check it with `tunesmith plan` and `tunesmith audit`.\n"
    return header + yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
