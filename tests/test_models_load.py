"""Loading a base model refuses a checkpoint that lacks weights: transformers would start them from random
values and only log a report, and the run would train (and evaluate, merge, serve) a partly random model."""

from __future__ import annotations

import json

import pytest

from conftest import run_cli
from tiny import build_chatml_model


@pytest.fixture(scope="module")
def holey(tmp_path_factory):
    """A tiny Llama folder whose safetensors lost one weight (as a forgotten shard would)."""
    from safetensors.torch import load_file, save_file

    root = tmp_path_factory.mktemp("holey") / "model"
    build_chatml_model(root)
    weights = load_file(str(root / "model.safetensors"))
    del weights["model.layers.1.mlp.up_proj.weight"]
    save_file(weights, str(root / "model.safetensors"), metadata={"format": "pt"})
    return root


def test_a_checkpoint_missing_a_weight_is_refused(holey):
    import torch

    from tunesmith.models.load import IncompleteCheckpointError, load_pretrained

    with pytest.raises(IncompleteCheckpointError, match=r"lacks weights a LlamaForCausalLM needs, or has them in "
                                                        r"another shape \(model\.layers\.1\.mlp\.up_proj\.weight\)"):
        load_pretrained(str(holey), {"dtype": torch.float32})


def test_a_reward_model_is_held_to_the_rule_for_its_body(holey):
    import torch

    from tunesmith.models.load import IncompleteCheckpointError, load_pretrained

    with pytest.raises(IncompleteCheckpointError, match=r"model\.layers\.1\.mlp\.up_proj\.weight"):
        load_pretrained(str(holey), {"dtype": torch.float32}, kind="reward")


def test_a_weight_of_another_shape_is_named_with_both_shapes(tmp_path):
    """transformers raises a bare RuntimeError ('look at the above report') for a misshapen weight."""
    import torch
    from safetensors.torch import load_file, save_file

    from tunesmith.models.load import IncompleteCheckpointError, load_pretrained

    build_chatml_model(tmp_path / "model")
    weights = load_file(str(tmp_path / "model" / "model.safetensors"))
    weights["model.layers.0.self_attn.o_proj.weight"] = weights["model.layers.0.self_attn.o_proj.weight"][:, :16].clone()
    save_file(weights, str(tmp_path / "model" / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(IncompleteCheckpointError, match=r"\(model\.layers\.0\.self_attn\.o_proj\.weight: 32x16 in "
                                                        r"the file vs 32x32 needed\)"):
        load_pretrained(str(tmp_path / "model"), {"dtype": torch.float32})


def test_a_complete_checkpoint_loads_and_a_reward_model_gets_its_new_head(tmp_path):
    import torch

    from tunesmith.models.load import load_pretrained

    build_chatml_model(tmp_path / "model")
    assert type(load_pretrained(str(tmp_path / "model"), {"dtype": torch.float32})).__name__ == "LlamaForCausalLM"
    reward = load_pretrained(str(tmp_path / "model"), {"dtype": torch.float32}, kind="reward")
    assert reward.score.weight.shape[0] == 1  # the score head is new by design, the body complete


def test_train_on_an_incomplete_base_stops_with_one_sentence(holey, tmp_path):
    data = tmp_path / "train.jsonl"
    rows = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}] * 8
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = tmp_path / "run.yaml"
    config.write_text(f"base_model: {holey}\ndatasets: [{{path: {data}}}]\nmax_steps: 1\n"
                      f"output_dir: {tmp_path / 'run'}\naudit: {{fail_on: never}}\n")
    proc = run_cli("train", str(config), timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert f"error: {holey}: the checkpoint lacks weights a LlamaForCausalLM needs" in proc.stderr
    assert not (tmp_path / "run" / "model").exists()


@pytest.fixture(scope="module")
def sft_adapter(tmp_path_factory):
    """(base folder, a LoRA adapter trained on it by tunesmith)."""
    from tunesmith.config import config_from_dict
    from tunesmith.train import run

    root = tmp_path_factory.mktemp("adapter")
    build_chatml_model(root / "base")
    rows = [{"messages": [{"role": "user", "content": f"What is {i} plus 1?"},
                          {"role": "assistant", "content": f"It is {i + 1}."}]} for i in range(16)]
    (root / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = config_from_dict({"base_model": str(root / "base"), "datasets": [{"path": str(root / "data.jsonl")}],
                               "output_dir": str(root / "run"), "sequence_len": 64, "micro_batch_size": 4,
                               "max_steps": 4, "learning_rate": 5e-3, "bf16": False, "seed": 1, "lora_dropout": 0.0,
                               "audit": {"fail_on": "never"}})
    return root / "base", run(config, quiet=True, say=lambda s: None).model_dir


def test_an_adapter_as_base_is_merged_into_its_recorded_base(sft_adapter):
    import torch
    from peft import AutoPeftModelForCausalLM

    from tunesmith.models.load import load_pretrained

    _, adapter = sft_adapter
    merged = load_pretrained(str(adapter), {"dtype": torch.float32}).eval()
    expected = AutoPeftModelForCausalLM.from_pretrained(str(adapter), dtype=torch.float32).merge_and_unload().eval()
    ids = torch.tensor([[1, 5, 9, 14, 3]])
    with torch.no_grad():
        assert torch.allclose(merged(input_ids=ids).logits, expected(input_ids=ids).logits, atol=1e-5)
    assert not hasattr(merged, "peft_config")  # a plain model, the adapter folded in


def test_an_adapter_whose_base_lost_a_weight_is_refused(sft_adapter, tmp_path):
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from tunesmith.models.load import IncompleteCheckpointError, load_pretrained

    base, adapter = sft_adapter
    shutil.copytree(adapter, tmp_path / "adapter")
    shutil.copytree(base, tmp_path / "base")
    weights = load_file(str(tmp_path / "base" / "model.safetensors"))
    del weights["model.layers.0.mlp.gate_proj.weight"]
    save_file(weights, str(tmp_path / "base" / "model.safetensors"), metadata={"format": "pt"})
    info = json.loads((tmp_path / "adapter" / "tunesmith_model.json").read_text())
    del info["base_weights"]  # as an adapter saved before the record (else check_base refuses the changed base first)
    (tmp_path / "adapter" / "tunesmith_model.json").write_text(json.dumps({**info, "base_model": str(tmp_path / "base")}))
    with pytest.raises(IncompleteCheckpointError, match=r"base: the checkpoint lacks weights .*gate_proj"):
        load_pretrained(str(tmp_path / "adapter"), {"dtype": torch.float32})


def test_an_adapter_file_missing_a_tensor_is_refused_everywhere_it_loads(sft_adapter, tmp_path):
    """PEFT only warns ('Found missing adapter keys') and keeps the tensor's random initialisation."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from tunesmith import infer
    from tunesmith.models.load import IncompleteCheckpointError, load_pretrained

    _, adapter = sft_adapter
    shutil.copytree(adapter, tmp_path / "adapter")
    weights = load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    dropped = sorted(k for k in weights if "lora_A" in k)[0]
    del weights[dropped]
    save_file(weights, str(tmp_path / "adapter" / "adapter_model.safetensors"), metadata={"format": "pt"})
    expected = rf"adapter: the adapter file lacks tensors its adapter_config.json implies \({dropped}\)"
    with pytest.raises(IncompleteCheckpointError, match=expected):
        load_pretrained(str(tmp_path / "adapter"), {"dtype": torch.float32})  # as a base (merged)
    with pytest.raises(IncompleteCheckpointError, match=expected):
        infer.load(tmp_path / "adapter")  # evaluate, chat


def test_an_adapter_of_another_base_is_refused_in_one_sentence(sft_adapter, tmp_path):
    import torch

    from tunesmith.models.load import IncompleteCheckpointError, load_adapter, load_pretrained

    _, adapter = sft_adapter
    build_chatml_model(tmp_path / "wider", hidden=48)
    with pytest.raises(IncompleteCheckpointError, match=r"adapter's tensors do not fit its base model \(size mismatch "
                                                        r"for .*was it trained on another base\?"):
        load_adapter(load_pretrained(str(tmp_path / "wider"), {"dtype": torch.float32}), adapter)


def test_a_refused_adapter_leaves_the_model_as_it_was(sft_adapter, tmp_path):
    """A server loading an adapter at runtime must not keep the half-loaded layers of one it refused: PEFT
    injects them into the base's modules before it finds the mismatch."""
    import torch

    from tunesmith.models.load import IncompleteCheckpointError, load_adapter, load_pretrained

    base, adapter = sft_adapter
    build_chatml_model(tmp_path / "wider", hidden=48)
    other = load_pretrained(str(tmp_path / "wider"), {"dtype": torch.float32})
    ids = torch.tensor([[1, 5, 9, 14, 3]])
    with torch.no_grad():
        before = other(input_ids=ids).logits
    with pytest.raises(IncompleteCheckpointError):
        load_adapter(other, adapter)
    with torch.no_grad():
        assert torch.equal(other(input_ids=ids).logits, before)
    assert not any("lora" in name for name, _ in other.named_parameters())
    served = load_adapter(load_pretrained(str(base), {"dtype": torch.float32}), adapter, adapter_name="a")
    with pytest.raises(IncompleteCheckpointError):
        load_adapter(served, _holey_copy(adapter, tmp_path), adapter_name="b")
    assert set(served.peft_config) == {"a"}  # the refused one deleted, the loaded one kept


def _holey_copy(adapter, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(adapter, tmp_path / "holey-adapter")
    weights = load_file(str(tmp_path / "holey-adapter" / "adapter_model.safetensors"))
    del weights[sorted(weights)[0]]
    save_file(weights, str(tmp_path / "holey-adapter" / "adapter_model.safetensors"), metadata={"format": "pt"})
    return tmp_path / "holey-adapter"


def other_weights(base, dest):
    """A copy of ``base`` with other weights of the same shapes (as another fine-tune of the same model)."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(base, dest)
    weights = load_file(str(dest / "model.safetensors"))
    weights["model.layers.0.mlp.up_proj.weight"] += 0.5
    save_file(weights, str(dest / "model.safetensors"), metadata={"format": "pt"})
    return dest


def test_an_adapter_on_other_base_weights_is_refused_where_it_loads(sft_adapter, tmp_path):
    """PEFT puts an adapter on any base of the same shapes, and merge's logit check compared the merge with that
    same adapter-on-the-wrong-base, so it passed. The adapter records its base's weights fingerprint."""
    import shutil

    from tunesmith import infer
    from tunesmith.models.load import BaseMismatchError, load_pretrained

    base, adapter = sft_adapter
    other = other_weights(base, tmp_path / "other")
    with pytest.raises(BaseMismatchError, match=rf"{adapter}: trained on other base weights than {other} holds "
                                                rf".* use the base it was trained on \({base}, as it was then\)"):
        infer.load(adapter, base_model=str(other))
    # the recorded base itself changed in place: its weights replaced after training
    shutil.copytree(adapter, tmp_path / "adapter")
    info = json.loads((tmp_path / "adapter" / "tunesmith_model.json").read_text())
    (tmp_path / "adapter" / "tunesmith_model.json").write_text(json.dumps({**info, "base_model": str(other)}))
    with pytest.raises(BaseMismatchError, match="use the base it was trained on, restored as it was then"):
        load_pretrained(str(tmp_path / "adapter"), {})  # an adapter as base (DPO on top of SFT)
    # no false refusal: the same weights in another folder, with a README and another tokenizer file beside them
    shutil.copytree(base, tmp_path / "copy")
    (tmp_path / "copy" / "README.md").write_text("notes")
    (tmp_path / "copy" / "special_tokens_map.json").write_text("{}")
    assert infer.load(adapter, base_model=str(tmp_path / "copy")).kind == "adapter"


def test_merge_onto_other_base_weights_stops_before_writing(sft_adapter, tmp_path):
    base, adapter = sft_adapter
    other = other_weights(base, tmp_path / "other")
    config = tmp_path / "run.yaml"
    config.write_text(f"base_model: {other}\ndatasets: [{{path: {adapter.parent.parent / 'data.jsonl'}}}]\n"
                      f"output_dir: {adapter.parent}\n")
    proc = run_cli("merge", str(config), "--out", str(tmp_path / "merged"), timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert f"error: {adapter}: trained on other base weights than {other} holds" in proc.stderr
    assert not (tmp_path / "merged").exists()
