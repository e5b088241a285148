"""What the training replies teach beyond their content: refusing (``refusal_share``) and breaking
the JSON format an eval task's ``json_schema`` asks for (``json_schema_violation``)."""

from __future__ import annotations

import json
import re
from typing import Any

from tunesmith.audit.context import AuditContext
from tunesmith.audit.registry import register
from tunesmith.audit.report import Finding

_FENCED = re.compile(r"^\s*```(?:json)?\s*\n(.*?)\n?```\s*$", re.S)


def _train_answers(ctx: AuditContext) -> list[int]:
    """Training replies the model is taught to give: a KTO reply labelled undesirable is taught against."""
    v = ctx.views
    return [i for i in ctx.indices("train") if v.kind[i] in ("sft", "kto") and not v.tool_answer[i]
            and v.response[i].strip() and ctx.records[i].label is not False]


def is_refusal(text: str, markers: list[str], within: int) -> bool:
    """A refusal phrase within the first ``within`` characters (case-insensitive, curly apostrophes as straight)."""
    head = text[:within].lower().replace("\u2019", "'")
    return any(map(head.__contains__, markers))


@register("refusal_share")
def refusal_share(ctx: AuditContext) -> Finding | None:
    """More than ``max_share`` of the training replies are refusals: the model learns to refuse."""
    g = ctx.g("refusal_share")
    idx = _train_answers(ctx)
    rows = [ctx.records[i] for i in idx if is_refusal(ctx.views.response[i], g["markers"], g["within_chars"])]
    if not idx or len(rows) / len(idx) <= g["max_share"]:
        return None
    return Finding.for_rows(
        "refusal_share", "warning", rows,
        f"{len(rows)} of {len(idx)} training replies ({len(rows) / len(idx):.0%}) are refusals, more than "
        f"{g['max_share']:.0%}: the model learns to refuse requests it should answer.",
        "Remove or rewrite refusals that are not intended (often copied from a safety-tuned model's outputs); "
        "keep intended ones few and specific.",
    )


def _json_of(text: str) -> tuple[bool, Any]:
    """(looks like JSON, parsed value or None when it does not parse)."""
    fenced = _FENCED.match(text)
    body = (fenced.group(1) if fenced else text).strip()
    if not body.startswith(("{", "[")):
        return False, None
    try:
        return True, json.loads(body)
    except ValueError:
        return True, None


@register("json_schema_violation")
def json_schema_violation(ctx: AuditContext) -> Finding | None:
    """Training replies in JSON that break every ``json_schema`` of the config's eval tasks (or do not parse)."""
    from jsonschema.validators import validator_for

    tasks = [t for t in (ctx.config.dataset_tasks if ctx.config else []) if t.json_schema is not None]
    if not tasks:
        return None
    validators = [validator_for(t.json_schema)(t.json_schema) for t in tasks]
    idx = _train_answers(ctx)
    looked, bad = 0, []
    for i in idx:
        looks, value = _json_of(ctx.views.response[i])
        if not looks:
            continue
        looked += 1
        if value is None or not any(v.is_valid(value) for v in validators):
            bad.append(ctx.records[i])
    if not bad:
        return None
    names = ", ".join(t.name for t in tasks)
    return Finding.for_rows(
        "json_schema_violation", "error" if len(bad) > ctx.g("json_schema_violation")["max_share"] * looked
        else "warning", bad,
        f"{len(bad)} of {looked} JSON training replies ({1 - len(bad) / looked:.0%} valid) do not parse or break the "
        f"json_schema of eval task(s) {names}: the model learns the format the evaluation fails.",
        "Fix these replies to follow the schema (or fix the schema): training and evaluation must agree on the format.",
    )
