"""generation_config's stop ids are exactly EOS plus the template's trained end-of-turn tokens."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunesmith.tokenize import end_of_turn_ids

from tiny import build_tokenizer

TEMPLATES = Path(__file__).resolve().parents[1] / "src/tunesmith/tokenize/templates"


@pytest.mark.parametrize("template,extra,bos,eos,expected", [
    ("llama3", ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
     "<|begin_of_text|>", "<|end_of_text|>", ["<|end_of_text|>", "<|eot_id|>"]),
    ("gemma", ["<start_of_turn>", "<end_of_turn>"], "<bos>", "<eos>", ["<eos>", "<end_of_turn>"]),
    ("chatml", ["<|im_start|>", "<|im_end|>"], None, "<|im_end|>", ["<|im_end|>"]),
    ("alpaca", [], "<s>", "</s>", ["</s>"]),
])
def test_end_of_turn_ids(tmp_path, template, extra, bos, eos, expected):
    tok = build_tokenizer(tmp_path, (TEMPLATES / f"{template}.jinja").read_text(), extra, bos_token=bos, eos_token=eos)
    assert tok.convert_ids_to_tokens(end_of_turn_ids(tok)) == expected
