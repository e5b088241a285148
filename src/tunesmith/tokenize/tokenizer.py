"""Load a tokenizer, attach the configured chat template, and fingerprint the result.

``chat_template`` is ``tokenizer_default`` (the tokenizer's own), a built-in name (a
``templates/<name>.jinja`` data file of this package) or a path to a ``.jinja`` file.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunesmith.errors import ConfigError, TunesmithError, did_you_mean

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

DEFAULT_TEMPLATE = "tokenizer_default"


def builtin_templates() -> list[str]:
    """Names of the chat templates shipped with tunesmith."""
    folder = resources.files("tunesmith.tokenize") / "templates"
    return sorted(p.name[: -len(".jinja")] for p in folder.iterdir() if p.name.endswith(".jinja"))


def template_text(chat_template: str) -> str | None:
    """The Jinja text for a built-in name or a file path; None for ``tokenizer_default``."""
    if chat_template == DEFAULT_TEMPLATE:
        return None
    if chat_template in builtin_templates():
        return (resources.files("tunesmith.tokenize") / "templates" / f"{chat_template}.jinja").read_text("utf-8")
    path = Path(chat_template)
    if path.is_file():
        return path.read_text("utf-8")
    names = builtin_templates()
    suggestion = did_you_mean(chat_template, names)
    raise ConfigError(
        f"chat_template: '{chat_template}' is neither a built-in template ({', '.join(names)}), "
        f"'{DEFAULT_TEMPLATE}', nor an existing .jinja file{suggestion}"
    )


def load_tokenizer(
    base_model: str, chat_template: str = DEFAULT_TEMPLATE, special_tokens: Any = None
) -> PreTrainedTokenizerBase:
    """Load the (fast) tokenizer of ``base_model``, set its chat template and ``special_tokens``.

    ``base_model`` may be a folder holding only tokenizer files; no weights are read.
    ``special_tokens`` (``config.special_tokens``: bos/eos/pad/unk) must already be in the
    vocabulary: tunesmith never adds tokens (new rows in the embedding matrix would be untrained).
    A GGUF file or catalogue name is converted (once, cached) into a model folder first
    (``tunesmith.models``).
    """
    from transformers import AutoTokenizer

    from tunesmith.models import resolve

    text = template_text(chat_template)
    base_model = resolve(base_model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(base_model)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"base_model: cannot load a tokenizer from '{base_model}': {exc}") from None
    if not tokenizer.is_fast:
        raise ConfigError(
            f"base_model: the tokenizer of '{base_model}' is not a fast (tokenizers) tokenizer; "
            "tunesmith needs character offsets to find the trained spans"
        )
    if text is not None:
        tokenizer.chat_template = text
    set_special_tokens(tokenizer, special_tokens)
    return tokenizer


def load_saved(folder: str | Path, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """The tokenizer of a saved model folder (or hub id) exactly as saved: its own template and
    special tokens. The one loader for artifacts (``load_tokenizer`` is for a run's base model)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder), **({"trust_remote_code": True} if trust_remote_code else {}))
    except (OSError, ValueError) as exc:
        raise TunesmithError(f"{folder}: cannot load the tokenizer: {str(exc).splitlines()[0]}") from None


def set_special_tokens(tokenizer: PreTrainedTokenizerBase, special_tokens: Any) -> None:
    """Point bos/eos/pad/unk at tokens of the vocabulary (Axolotl ``special_tokens``)."""
    if special_tokens is None:
        return
    items = special_tokens if isinstance(special_tokens, dict) else special_tokens.model_dump()
    vocab = tokenizer.get_vocab()
    for name, token in items.items():
        if token is None:
            continue
        if token not in vocab:
            raise ConfigError(
                f"special_tokens.{name}: {token!r} is not in the tokenizer's vocabulary; tunesmith does not add "
                "tokens (their embeddings would be untrained): pick a token the tokenizer has"
            )
        setattr(tokenizer, name, token)


def require_chat_template(tokenizer: PreTrainedTokenizerBase, chat_template: str) -> None:
    """Raise a ConfigError when chat data meets a tokenizer without a chat template, or with one
    that does not fit it (another model family's template, a turn closer that is not special;
    see ``template_fit``)."""
    if not tokenizer.chat_template:
        raise ConfigError(
            f"chat_template: {chat_template}, but the tokenizer of this base model has no chat template; "
            f"set chat_template to one of {', '.join(builtin_templates())} or a .jinja file"
        )
    from tunesmith.tokenize.template_fit import check_template

    check_template(tokenizer, chat_template)


def closer_ids(tokenizer: PreTrainedTokenizerBase) -> frozenset[int]:
    """Token ids that may close a turn: EOS and every special added token except BOS and a distinct pad."""
    ids = {i for i, tok in tokenizer.added_tokens_decoder.items() if tok.special}
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    for not_closer in (tokenizer.bos_token_id, tokenizer.unk_token_id):
        if not_closer is not None and not_closer != tokenizer.eos_token_id:
            ids.discard(not_closer)
    if tokenizer.pad_token_id is not None and tokenizer.pad_token_id != tokenizer.eos_token_id:
        ids.discard(tokenizer.pad_token_id)
    return frozenset(ids)


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """sha256 over vocabulary/merges/normaliser (tokenizer.json), special tokens and chat template."""
    h = hashlib.sha256()
    h.update(tokenizer.backend_tokenizer.to_str().encode("utf-8"))
    specials = {k: str(v) for k, v in sorted(tokenizer.special_tokens_map.items())}
    added = {str(i): [t.content, t.special] for i, t in sorted(tokenizer.added_tokens_decoder.items())}
    template = tokenizer.chat_template
    meta = {"class": type(tokenizer).__name__, "specials": specials, "added": added, "template": template}
    h.update(json.dumps(meta, sort_keys=True, default=str).encode("utf-8"))
    return h.hexdigest()
