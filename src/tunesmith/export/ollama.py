"""Ollama Modelfiles: the Jinja chat template translated to Ollama's Go template (translations are
data files, ``ollama/<family>.tmpl``), the trained system prompt, one ``PARAMETER stop`` per
end-of-turn token; reading a Modelfile back, and rendering its TEMPLATE as Ollama would."""

from __future__ import annotations

import re
import shlex
from importlib import resources
from pathlib import Path
from typing import Any

from tunesmith.data.records import Message
from tunesmith.errors import TunesmithError
from tunesmith.export import gotemplate
from tunesmith.export.source import probes, render_conversation

MODELFILE = "Modelfile"
# the system prompt family detection renders with (besides none), so that where a family puts it is tested too
_PROBE_SYSTEM = "You are a careful assistant."


def families() -> list[str]:
    folder = resources.files("tunesmith.export") / "ollama"
    return sorted(p.name.removesuffix(".tmpl") for p in folder.iterdir() if p.name.endswith(".tmpl"))


def translation(family: str) -> str:
    return (resources.files("tunesmith.export") / "ollama" / f"{family}.tmpl").read_text("utf-8").removesuffix("\n")


def ollama_render(template: str, system: str | None, conversation: list[Message]) -> str:
    """What Ollama renders for ``conversation`` with the Modelfile's SYSTEM: the system prompt becomes
    the first message and ``.System``; consecutive messages of one role are joined, as Ollama does."""
    messages = ([Message("system", system)] if system else []) + list(conversation)
    joined: list[dict[str, Any]] = []
    for m in messages:
        if joined and joined[-1]["Role"] == m.role:
            joined[-1]["Content"] += "\n\n" + m.content
        else:
            joined.append({"Role": m.role, "Content": m.content})
    return gotemplate.render(template, {"System": system or "", "Messages": joined, "Tools": None})


def family(tokenizer: Any, add_bos: bool) -> str:
    """The translation that renders the probe conversation exactly as the training template does
    (with and without a system prompt); refused, with what to do instead, when none does."""
    bos = tokenizer.bos_token if add_bos else ""
    for name in families():
        template = translation(name)
        if all(render_conversation(tokenizer, s) == bos + ollama_render(template, s, probes().conversation)
               for s in (None, _PROBE_SYSTEM)):
            return name
    raise TunesmithError(f"ollama export: the chat template renders like none of the Ollama translations "
                         f"({', '.join(families())}); export --format gguf instead (the Jinja template and stop ids "
                         "are in the GGUF metadata; `llama-server --jinja` uses them) or write the Modelfile "
                         "TEMPLATE by hand")


def check_quotable(template: str, system: str | None, stops: list[str]) -> None:
    """Refuse what a Modelfile cannot quote (checked before any weight is read, and again when writing)."""
    for text, what in ((template, "the template"), (system or "", "the system prompt")):
        if '"""' in text:
            raise TunesmithError(f'ollama export: {what} contains """, which a Modelfile cannot quote')
    if any('"' in s for s in stops):
        raise TunesmithError(f"ollama export: a stop string contains a double quote ({stops})")


def write_modelfile(out: Path, gguf_name: str, template: str, system: str | None, stops: list[str]) -> Path:
    check_quotable(template, system, stops)
    lines = [f"FROM ./{gguf_name}", "", f'TEMPLATE """{template}"""', ""]
    if system:
        lines += [f'SYSTEM """{system}"""', ""]
    lines += [f'PARAMETER stop "{s}"' for s in stops]
    path = out / MODELFILE
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path


_INSTRUCTION = re.compile(r'^(\w+)[ \t]+("""(.*?)"""|"((?:\\.|[^"\\])*)"|(.*?))[ \t]*$', re.S | re.M)


def read_modelfile(path: Path) -> dict[str, Any]:
    """FROM, TEMPLATE, SYSTEM and the PARAMETERs (stop as a list) of a Modelfile."""
    text = path.read_text("utf-8")
    out: dict[str, Any] = {"stop": []}
    pos = 0
    while (m := _INSTRUCTION.search(text, pos)) is not None:
        command = m.group(1).upper()
        value = next(g for g in (m.group(3), m.group(4), m.group(5)) if g is not None)
        pos = m.end()
        if command == "PARAMETER":
            key, _, rest = value.partition(" ")
            rest = rest.strip()
            rest = rest[1:-1] if len(rest) >= 2 and rest[0] == rest[-1] == '"' else rest
            if key == "stop":
                out["stop"].append(rest)
            else:
                out[key] = rest
        else:
            out[command] = value
    return out


def create_command(out: Path, name: str) -> str:
    """The command to run, quoted for a shell (a name or path with a space runs as printed)."""
    return shlex.join(["ollama", "create", name, "-f", str(out / MODELFILE)])


def model_name(label: str) -> str:
    """An Ollama model name from a folder name: lower case letters, digits, '-', '_', '.'."""
    return re.sub(r"[^a-z0-9._-]+", "-", label.lower()).strip("-._") or "tunesmith-model"
