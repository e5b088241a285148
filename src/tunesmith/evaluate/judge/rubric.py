"""Judge rubrics: loading (bundled default or a user file, validated with file:line errors),
their fingerprint (part of the verdict cache key) and the chat messages they produce."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

from jinja2 import Environment, StrictUndefined, Template, TemplateSyntaxError

from tunesmith.config.schema import Rubric
from tunesmith.errors import ConfigError

_DEFAULT = "rubric.yaml"


def load_rubric(path: str | Path | None = None) -> Rubric:
    """The rubric in ``path`` (YAML), or the bundled default; its templates must compile."""
    from tunesmith.config.loader import load_yaml_model

    where = Path(path) if path is not None else Path(str(files("tunesmith.evaluate.judge").joinpath(_DEFAULT)))
    rubric = load_yaml_model(where, Rubric, "rubric")
    for key, text in (("template", rubric.template), ("pairwise.template", rubric.pairwise.template)):
        try:
            _template(text)
        except TemplateSyntaxError as exc:
            raise ConfigError(f"{where}: {key}: not a valid Jinja template: {exc.message} (template line {exc.lineno})") from None
    return rubric


def fingerprint(rubric: Rubric) -> str:
    """A hash of everything in the rubric (a change of wording or scale invalidates cached verdicts)."""
    return hashlib.sha256(rubric.model_dump_json().encode()).hexdigest()[:16]


@lru_cache(maxsize=32)
def _template(text: str) -> Template:
    env = Environment(undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    return env.from_string(text)


def rubric_messages(rubric: Rubric, prompt: str, reply: str, reference: str | None) -> list[dict[str, str]]:
    """The chat messages asking the judge to grade ``reply`` to ``prompt`` on the rubric."""
    body = _template(rubric.template).render(prompt=prompt, reply=reply, reference=reference or "",
                                             criteria=rubric.criteria, flags=rubric.flags)
    return [{"role": "system", "content": rubric.system}, {"role": "user", "content": body}]


def pairwise_messages(rubric: Rubric, prompt: str, first: str, second: str,
                      reference: str | None) -> list[dict[str, str]]:
    """The chat messages asking the judge which of two replies is better (shown in this order)."""
    body = _template(rubric.pairwise.template).render(prompt=prompt, first=first, second=second,
                                                      reference=reference or "")
    return [{"role": "system", "content": rubric.pairwise.system}, {"role": "user", "content": body}]
