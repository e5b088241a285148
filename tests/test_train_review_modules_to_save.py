"""modules_to_save names are matched as PEFT matches them (every module whose name ends with the name): train
records what each name matched and warns, listing them, when one name trains more than one module
(``norm`` also trained every layer's input/post-attention layernorm, outside peft_layers_to_transform too)."""

from __future__ import annotations

import json

from test_train import base, make_config  # noqa: F401 (the tiny base fixture)
from tunesmith.config.defaults import resolve
from tunesmith.train import model as train_model
from tunesmith.train import preflight, run

NORMS = ["model.layers.0.input_layernorm", "model.layers.0.post_attention_layernorm",
         "model.layers.1.input_layernorm", "model.layers.1.post_attention_layernorm", "model.norm"]


def _layered(base, tmp_path, **over):  # noqa: F811
    return make_config(base, tmp_path, lora_target_modules=["q_proj"], peft_layers_to_transform=[1], **over)


def test_the_matches_are_the_modules_peft_wraps(base, tmp_path):  # noqa: F811
    from peft import get_peft_model
    from peft.utils.other import ModulesToSaveWrapper
    from transformers import AutoModelForCausalLM

    config = _layered(base, tmp_path, modules_to_save=["norm", "lm_head"])
    matches = preflight.modules_to_save_matches(config)
    assert matches == {"norm": NORMS, "lm_head": ["lm_head"]}
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                           train_model.peft_config(config, resolve(config, 24)))
    wrapped = sorted(n.removeprefix("base_model.model.") for n, m in model.named_modules()
                     if isinstance(m, ModulesToSaveWrapper))
    assert wrapped == sorted(NORMS + ["lm_head"])


def test_a_name_matching_several_modules_is_a_warning_listing_them(base, tmp_path):  # noqa: F811
    config = _layered(base, tmp_path, modules_to_save=["norm", "lm_head"])
    [warning] = preflight.modules_to_save_warnings(config, preflight.modules_to_save_matches(config))
    assert warning.startswith("modules_to_save: 'norm' matches 5 modules, each trained and saved in full (PEFT takes "
                              f"every module whose name ends with it): {', '.join(NORMS)}; 2 of them in layers "
                              "outside peft_layers_to_transform [1]; to train one, give its full name (e.g. model.norm)")
    exact = _layered(base, tmp_path, modules_to_save=["model.norm"])
    assert preflight.modules_to_save_matches(exact) == {"model.norm": ["model.norm"]}
    assert preflight.modules_to_save_warnings(exact, preflight.modules_to_save_matches(exact)) == []
    assert preflight.modules_to_save_matches(make_config(base, tmp_path)) == {}  # none asked for
    skipped = _layered(base, tmp_path, modules_to_save=["norm"], lint_skip=["modules_to_save"])
    assert preflight.modules_to_save_warnings(skipped, preflight.modules_to_save_matches(skipped)) == []
    assert len(preflight.modules_to_save_matches(skipped)["norm"]) == 5  # still recorded


def test_train_warns_and_records_the_matches(base, tmp_path):  # noqa: F811
    said: list[str] = []
    config = _layered(base, tmp_path, modules_to_save=["norm"], max_steps=1, sample_generations=0)
    result = run(config, quiet=True, say=said.append)
    record = json.loads((result.output_dir / "run.json").read_text())
    assert record["modules_to_save"] == {"norm": NORMS}
    [warning] = [w for w in record["lint"] if w.startswith("modules_to_save:")]
    assert f"warning: {warning}" in said
