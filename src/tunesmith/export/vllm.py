"""The vLLM hand-off: the ``vllm serve`` command that serves a tunesmith model folder the same way.

``command(model_dir, adapters)`` is pure (it reads the folder, writes nothing). A merged or full
model is served directly; an adapter folder (a run's ``model/``) is served as its base with
``--enable-lora --lora-modules NAME=PATH --max-lora-rank R``, the base under ``NAME-base`` and
the adapter under the name tunesmith's own server gives it. ``--chat-template`` is the
folder's template (``chat_template.vllm.jinja`` when ``write_chat_template`` made one that adds
the trained system prompt), ``--generation-config`` the folder, so vLLM stops on the same ids,
and prefix caching is on. Flags as documented for ``vllm serve`` (vLLM >= 0.8).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunesmith.errors import TunesmithError

LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # vLLM's accepted --max-lora-rank values
TEMPLATE = "chat_template.jinja"
SERVE_TEMPLATE = "chat_template.vllm.jinja"
_OPTS = {"served_model_name", "chat_template", "max_model_len", "dtype", "trust_remote_code", "extra"}


def command(model_dir: str | Path, adapters: dict[str, str | Path] | None = None, host: str = "127.0.0.1",
            port: int = 8000, **opts: Any) -> list[str]:
    """``vllm serve ...`` for ``model_dir`` (a model folder, run directory or quickstart folder) and ``adapters``.

    ``opts``: ``served_model_name``, ``chat_template`` (a path), ``max_model_len``, ``dtype``,
    ``trust_remote_code`` (bool), ``extra`` (more arguments, appended as given).
    """
    from tunesmith import infer

    unknown = set(opts) - _OPTS
    if unknown:
        raise TypeError(f"command() got unknown options {sorted(unknown)} (known: {sorted(_OPTS)})")
    given = Path(model_dir)
    folder = infer.resolve_model_dir(given).resolve()
    name = opts.get("served_model_name") or given.resolve().name
    loras = {k: Path(v).resolve() for k, v in (adapters or {}).items()}
    if (folder / "adapter_config.json").is_file():
        model, served = _base_of(folder), f"{name}-base"
        loras = {name: folder, **loras}
    else:
        model, served = str(folder), name
    cmd = ["vllm", "serve", model, "--served-model-name", served, "--host", host, "--port", str(port)]
    cmd += _hf_overrides(list(loras.values()))
    template = opts.get("chat_template") or template_path(folder)
    if template:
        cmd += ["--chat-template", str(template)]
    cmd += ["--generation-config", str(folder), "--enable-prefix-caching"]
    if loras:
        cmd += ["--enable-lora", "--max-loras", str(len(loras)), "--max-lora-rank", str(max_lora_rank(loras.values())),
                "--lora-modules", *[f"{k}={v}" for k, v in loras.items()]]
    if opts.get("max_model_len"):
        cmd += ["--max-model-len", str(int(opts["max_model_len"]))]
    if opts.get("dtype"):
        cmd += ["--dtype", str(opts["dtype"])]
    if opts.get("trust_remote_code"):
        cmd.append("--trust-remote-code")
    return cmd + [str(x) for x in opts.get("extra") or ()]


def environment(api_key: str | None = None, adapters: bool = True) -> dict[str, str]:
    """Environment for the vLLM process: the API key (never on the command line) and runtime adapter loading."""
    env = {"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"} if adapters else {}
    if api_key:
        env["VLLM_API_KEY"] = api_key
    return env


# adapter_config.json values vLLM's LoRA loader refuses (PEFTHelper: plain LoRA only): (refused?, what it is)
_NOT_IN_VLLM = (
    (lambda c: c.get("peft_type", "LORA") != "LORA", lambda c: f"a {c.get('peft_type')} adapter"),
    (lambda c: bool(c.get("use_dora")), lambda c: "a DoRA adapter"),
    (lambda c: bool(c.get("modules_to_save")), lambda c: f"an adapter with modules_to_save {c.get('modules_to_save')}"),
)
_VIRTUAL = ("PROMPT_TUNING", "PREFIX_TUNING", "P_TUNING")  # no weights to merge either


def check_loadable(folder: Path, config: dict[str, Any]) -> None:
    """Refuse, before vLLM starts, an adapter vLLM does not load (its server would fail at startup or at the
    first request), saying what serves it instead."""
    for refused, what in _NOT_IN_VLLM:
        if refused(config):
            instead = ("serve it with tunesmith serve" if config.get("peft_type") in _VIRTUAL else
                       f"merge it first (tunesmith merge {folder}) and serve the merged folder")
            raise TunesmithError(f"{folder}: {what(config)} is not served by vLLM as an adapter; {instead}")


def max_lora_rank(folders: Any) -> int:
    """The smallest rank vLLM accepts that fits every adapter's ``r`` (each checked to be one vLLM loads)."""
    ranks = []
    for folder in folders:
        config = json.loads((Path(folder) / "adapter_config.json").read_text("utf-8"))
        check_loadable(Path(folder), config)
        ranks.append(max([int(config.get("r", 8)), *[int(v) for v in (config.get("rank_pattern") or {}).values()]]))
    need = max(ranks, default=8)
    fitting = [r for r in LORA_RANKS if r >= need]
    if not fitting:
        raise TunesmithError(f"adapter rank {need} is above vLLM's maximum --max-lora-rank {LORA_RANKS[-1]}")
    return fitting[0]


def chat_template(model_dir: str | Path) -> str | None:
    """The folder's chat template, with the trained system prompt added to conversations that have none."""
    from tunesmith import infer

    folder = infer.resolve_model_dir(model_dir)
    path = folder / TEMPLATE
    if not path.is_file():
        return None
    text = path.read_text("utf-8")
    system = infer.info(folder).get("system_prompt")
    if not system:
        return text
    inject = ("{%- if messages and messages[0]['role'] != 'system' -%}"
              # the character itself, not JSON's \u escapes: Jinja reads a pair of them as two lone surrogates
              f"{{%- set messages = [{{'role': 'system', 'content': {json.dumps(system, ensure_ascii=False)}}}]"
              " + messages -%}"
              "{%- endif -%}\n")
    return inject + text


def write_chat_template(model_dir: str | Path) -> Path | None:
    """Write ``chat_template.vllm.jinja`` (template + trained system prompt) into the model folder when needed."""
    from tunesmith import infer

    folder = infer.resolve_model_dir(model_dir)
    if not infer.info(folder).get("system_prompt"):
        return None
    text = chat_template(folder)
    if text is None:
        return None
    out = folder / SERVE_TEMPLATE
    out.write_text(text, "utf-8")
    return out


def template_path(folder: Path) -> Path | None:
    """The template file ``--chat-template`` names for ``folder`` (the vLLM one when written)."""
    for name in (SERVE_TEMPLATE, TEMPLATE):
        if (folder / name).is_file():
            return folder / name
    return None


def _hf_overrides(adapters: list[Path]) -> list[str]:
    """``--hf-overrides`` with what the adapters' training set on the base's config (its RoPE scaling,
    ``models.load.base_overrides``): vLLM would load the base as its config.json describes it. Adapters
    trained on differently configured bases cannot share one base."""
    from tunesmith.models.load import base_overrides

    found = {json.dumps(base_overrides(a), sort_keys=True) for a in adapters}
    if len(found) > 1:
        raise TunesmithError(f"the adapters {', '.join(map(str, adapters))} were trained on differently configured "
                             "bases (tunesmith_model.json base_config): serve them with separate vLLM servers")
    values = json.loads(found.pop()) if found else {}
    return ["--hf-overrides", json.dumps(values)] if values else []


def _base_of(folder: Path) -> str:
    from tunesmith import infer

    base = infer.info(folder).get("base_model")
    if not base:
        base = json.loads((folder / "adapter_config.json").read_text("utf-8")).get("base_model_name_or_path")
    if not base:
        raise TunesmithError(f"{folder}: an adapter without a recorded base model (tunesmith_model.json)")
    return str(base)
