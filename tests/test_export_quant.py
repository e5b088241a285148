"""A quantised GGUF is judged by whether it is the trained model rounded as the file stores it, not by what the
quantisation costs the model (which is reported)."""

from __future__ import annotations

import json

import torch

from tunesmith import export
from tunesmith.export import gguf_writer
from tunesmith.train.artifacts import save_result

from test_export import checks, make_run


def test_a_q8_0_file_is_judged_by_its_rounding_not_by_what_q8_0_costs_the_model(tmp_path, monkeypatch):
    """A correct q8_0 export failed its check (max |logit diff| 0.14 > 1e-1 x the largest |logit| 1.37) on a tiny
    trained model, every tensor at q8_0's rounding limit: what 8-bit rounding costs depends on the model, so the
    file is compared with the trained model rounded as the file stores it, and the cost is reported."""
    run = make_run(tmp_path)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(run / "model"))
    with torch.no_grad():  # a model q8_0 rounds coarsely: one large weight per block, on an input that is always 0
        for name, p in model.named_parameters():
            if "norm" in name:
                p[::32] = 0
                p.mul_(5.0 if name == "model.norm.weight" else 1.0)
            elif any(k in name for k in ("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj")):
                p[:, ::32] = 10 * p.abs().max()
            elif "o_proj" in name or "down_proj" in name:
                p.mul_(20.0)
    save_result(model, AutoTokenizer.from_pretrained(str(run / "model")), run / "model",
                json.loads((run / "model" / "tunesmith_model.json").read_text()))
    result = export.run(export.ExportOptions(run, "gguf", "q8_0", out_dir=tmp_path / "q8"))
    found = checks(result)["logits"]
    assert result.passed and found.values["stored_max_abs_diff"] <= 1e-5, found.detail
    assert found.values["max_abs_diff"] > 0.1 * max(1.0, found.values["logit_scale"])  # the old bound failed it
    assert "the quantisation costs max |logit diff|" in found.detail and "top-1 agreement" in found.detail
    # planted: one matrix written 1 % off (what a wrong scale or a slip in the writer would do)
    tensors = gguf_writer._tensors

    def one_off(model, spec):
        return [(name, data * 1.01 if name == "blk.1.ffn_down.weight" else data) for name, data in tensors(model, spec)]

    monkeypatch.setattr(gguf_writer, "_tensors", one_off)
    broken = export.run(export.ExportOptions(run, "gguf", "q8_0", out_dir=tmp_path / "broken"))
    found = checks(broken)["logits"]
    assert not broken.passed and not found.passed and found.values["stored_max_abs_diff"] > found.values["tolerance"]
    assert broken.out_dir == tmp_path / "broken.failed"
