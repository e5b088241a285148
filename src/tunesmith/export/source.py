"""The trained model an export is made from and checked against: its folder, its training tokenizer
and template, its system prompt and end-of-turn tokens, the probes, and the reference logits."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from tunesmith.config.yaml_load import load_table
from tunesmith.data.records import Message

# a run directory or quickstart folder exports its most finished model: merged/ before model/
PREFER = ("", "merged", "model", "run/model")


@dataclass
class Probes:
    conversation: list[Message]
    prompts: list[list[Message]]
    texts: list[str]


@cache
def probes() -> Probes:
    raw = load_table((resources.files("tunesmith.export") / "probes.yaml").read_text("utf-8"))
    conversation = [Message(m["role"], m["content"]) for m in raw["conversation"]]
    return Probes(conversation, [[Message("user", p)] for p in raw["prompts"]], list(raw["texts"]))


@dataclass
class Source:
    """A model folder tunesmith wrote (adapter or full), read the way training and ``chat`` read it."""

    folder: Path
    kind: str  # "adapter" | "full"
    tokenizer: Any
    info: dict[str, Any]
    config: Any  # the architecture's transformers config
    loaded: Any = field(default=None, repr=False)

    @property
    def system_prompt(self) -> str | None:
        return self.info.get("system_prompt")

    def end_of_turn(self) -> list[int]:
        """The ids training put after every assistant reply (EOS and the template's turn closer)."""
        from tunesmith.tokenize import end_of_turn_ids

        return end_of_turn_ids(self.tokenizer)

    def end_of_turn_strings(self) -> set[str]:
        return set(self.tokenizer.convert_ids_to_tokens(self.end_of_turn()))

    def training_render(self) -> str:
        """The probe conversation as training renders a prompt: system prompt prepended, generation prompt."""
        return render_conversation(self.tokenizer, self.system_prompt)

    def probe_ids(self) -> list[list[int]]:
        """Token ids of every logit probe, rendered with the training template and system prompt."""
        from tunesmith import infer

        convs = [*probes().prompts, probes().conversation]
        return [infer.prompt_ids(self.tokenizer, c, self.system_prompt) for c in convs]

    def load(self) -> Any:
        """The trained model in float32 (an adapter on its base, unfolded), loaded once."""
        from tunesmith import infer

        if self.loaded is None:
            self.loaded = infer.load(self.folder, tokenizer=self.tokenizer)
        return self.loaded.model

    def standalone(self) -> Any:
        """The model as one set of weights: an adapter folded into its base (after the reference was taken)."""
        model = self.load()
        return model.merge_and_unload() if self.kind == "adapter" else model


def render_conversation(tokenizer: Any, system_prompt: str | None) -> str:
    from tunesmith.tokenize.rows import with_system_prompt
    from tunesmith.tokenize.spans import render

    turns = with_system_prompt(tuple(probes().conversation), system_prompt)
    return render(tokenizer, [m.to_dict() for m in turns], add_generation_prompt=True)


def resolve(path: Path) -> Source:
    """The model folder in ``path`` (itself, merged/, model/ or run/model/) with its tokenizer and config."""
    from transformers import AutoConfig

    from tunesmith import infer
    from tunesmith.errors import TunesmithError
    from tunesmith.merge.outputs import recover
    from tunesmith.tokenize import load_saved

    if Path(path).is_dir():  # a merge killed mid-way: the merged/ that passed back in place, its leftovers gone
        recover(Path(path) / "merged")
    folder = infer.resolve_model_dir(path, prefer=PREFER)
    info = infer.info(folder)
    kind = "adapter" if (folder / "adapter_config.json").is_file() else "full"
    tokenizer = load_saved(folder)
    if not tokenizer.chat_template:
        raise TunesmithError(f"{folder}: the tokenizer has no chat template; an export without one would not "
                             "render prompts as training did - export a model tunesmith trained with a chat_template")
    arch_dir = str(folder)
    if kind == "adapter":
        _refuse_virtual_tokens(folder)
        recorded = json.loads((folder / "adapter_config.json").read_text("utf-8")).get("base_model_name_or_path")
        arch_dir = info.get("base_model") or recorded
    return Source(folder, kind, tokenizer, info, AutoConfig.from_pretrained(str(arch_dir)))


def _refuse_virtual_tokens(folder: Path) -> None:
    """A prompt/prefix-tuning adapter has no weight deltas to fold into an exported model (before it loads)."""
    from peft import PeftConfig

    from tunesmith.errors import TunesmithError

    config = PeftConfig.from_pretrained(str(folder))
    if config.is_prompt_learning:
        raise TunesmithError(f"{folder / 'adapter_config.json'}: a {config.peft_type.value} adapter adds virtual "
                             "tokens instead of weight deltas, so it cannot be exported as one model; serve it as "
                             "an adapter (tunesmith serve, chat, evaluate)")


def logits(model: Any, ids: list[list[int]]) -> list[Any]:
    import torch

    with torch.inference_mode():
        return [model(input_ids=torch.tensor([p])).logits[0].float() for p in ids]
