"""Generation renders prompts exactly as training did; batching is exact; the merge check catches drift."""

from __future__ import annotations

import json

import pytest
import torch

from tunesmith import infer
from tunesmith.config import config_from_dict
from tunesmith.data.records import Message
from tunesmith.errors import TunesmithError
from tunesmith.tokenize import encode_chat
from tunesmith.tokenize.chat import IGNORE
from tunesmith.tokenize.tokenizer import template_text

from tiny import build_model, build_tokenizer

IM = ["<|im_start|>", "<|im_end|>"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    tok = build_tokenizer(root, template_text("chatml"), IM, eos_token="<|im_end|>", pad_token="<pad>")
    build_model(root, tok, hidden=64)
    return root


def test_prompt_ids_are_the_training_prefix(tiny):
    tok = infer.load(tiny).tokenizer
    user = [Message("user", "Plan the station please")]
    enc = encode_chat([Message("system", "Be brief."), *user, Message("assistant", "ok then")], tok)
    prompt = infer.prompt_ids(tok, user, system_prompt="Be brief.")
    assert enc.input_ids[: len(prompt)] == prompt
    assert all(label == IGNORE for label in enc.labels[: len(prompt)])
    assert enc.labels[len(prompt)] != IGNORE  # the first generated token is the first trained one


def test_prompt_ids_with_tools_are_the_training_prefix(tiny):
    tok = infer.load(tiny).tokenizer
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]
    user = [Message("user", "Weather in Paris?")]
    enc = encode_chat([*user, Message("assistant", "sunny")], tok, tools=tools)
    prompt = infer.prompt_ids(tok, user, tools=tools)
    assert enc.input_ids[: len(prompt)] == prompt and enc.labels[len(prompt)] != IGNORE
    assert len(prompt) > len(infer.prompt_ids(tok, user))  # the tool list is part of the prompt


def test_eval_task_is_read_with_its_dataset_options():
    from tunesmith.config import EvalTaskSpec

    spec = EvalTaskSpec(name="qa", path="qa.jsonl", type="rag", instruction="Use the sheet.", scorer="grounded",
                        abstention="Unknown")
    dataset = spec.dataset()
    assert (dataset.type, dataset.instruction, dataset.abstention) == ("rag", "Use the sheet.", "Unknown")


def test_batched_generation_equals_one_at_a_time(tiny):
    loaded = infer.load(tiny)
    convs = [[Message("user", text)] for text in ("hi", "what is the capital of france please", "thanks")]
    kwargs = {"eos_ids": loaded.eos_ids, "max_new_tokens": 6}
    batched = infer.generate(loaded.model, loaded.tokenizer, convs, batch_size=3, **kwargs)
    single = infer.generate(loaded.model, loaded.tokenizer, convs, batch_size=1, **kwargs)
    assert batched == single


def test_a_shared_prompt_prefix_is_prefilled_once_with_the_same_replies(tiny):
    from peft import LoraConfig, get_peft_model

    from tunesmith.infer.generate import _MIN_SHARED_PREFIX, shared_prefix

    loaded = infer.load(tiny)
    system = "You are the planning assistant of the plant. Answer briefly and use the plant's units."
    texts = ("hi", "what is the capital of france please", "thanks", "plan the paint line for 40 units")
    convs = [[Message("user", text)] for text in texts]
    prompts = [infer.prompt_ids(loaded.tokenizer, c, system_prompt=system) for c in convs]
    assert shared_prefix(prompts) >= _MIN_SHARED_PREFIX  # the batch takes the shared-prefix path
    assert shared_prefix([[1, 2, 3], [1, 2, 3]]) == 2  # each prompt keeps a token of its own
    kwargs = {"eos_ids": loaded.eos_ids, "max_new_tokens": 6, "system_prompt": system}
    lora = get_peft_model(loaded.model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    shapes: list[tuple[int, ...]] = []
    embed = loaded.model.get_input_embeddings()
    hook = embed.register_forward_hook(lambda _m, args, _out: shapes.append(tuple(args[0].shape)))
    for model in (loaded.model, lora):
        shapes.clear()
        batched = infer.generate_details(model, loaded.tokenizer, convs, batch_size=4, **kwargs)
        assert shapes[0] == (1, shared_prefix(prompts))  # the prefix, once, then the rows' own tokens
        assert shapes[1] == (4, max(len(p) for p in prompts) - shared_prefix(prompts))
        single = infer.generate_details(model, loaded.tokenizer, convs, batch_size=1, **kwargs)
        assert batched == single and all(g.tokens > 0 for g in batched)
    hook.remove()


def test_prompt_learning_models_prefill_each_prompt_whole(tiny):
    """Prefix/prompt tuning put virtual tokens in front of every input: no shared-prefix cache there."""
    from peft import PrefixTuningConfig, PromptTuningConfig, get_peft_model

    loaded = infer.load(tiny)
    system = "You are the planning assistant of the plant. Answer briefly and use the plant's units."
    convs = [[Message("user", text)] for text in ("hi", "what is the capital of france please")]
    kwargs = {"eos_ids": loaded.eos_ids, "max_new_tokens": 4, "system_prompt": system}
    for config in (PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3),
                   PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3)):
        model = get_peft_model(infer.load(tiny).model, config)
        batch_sizes: list[int] = []
        hook = model.get_base_model().get_input_embeddings().register_forward_hook(
            lambda _m, args, _out: batch_sizes.append(args[0].shape[0]))
        batched = infer.generate_details(model, loaded.tokenizer, convs, batch_size=2, **kwargs)
        hook.remove()
        assert 1 not in batch_sizes  # no prefix prefilled on its own
        assert batched == infer.generate_details(model, loaded.tokenizer, convs, batch_size=1, **kwargs)


def test_resolve_model_dir(tmp_path, tiny):
    (tmp_path / "run").mkdir()
    with pytest.raises(TunesmithError, match="no model found"):
        infer.resolve_model_dir(tmp_path)
    with pytest.raises(TunesmithError, match="no such file"):
        infer.resolve_model_dir(tmp_path / "missing")
    assert infer.resolve_model_dir(tiny) == tiny


def test_a_missing_local_path_is_named_not_sent_to_the_hub():
    """``config.refs.looks_like_hub_id`` is the one rule: a path that is not there (``~/...``, ``../x``)
    is reported as missing, only ``org/name`` goes to the hub loader."""
    for path in ("~/no/such/model", "../no/such", "models/../gone"):
        with pytest.raises(TunesmithError, match=r"no such file or directory"):
            infer.load(path)


def _adapter(tiny, out, info=None):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tunesmith.train.artifacts import save_result

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(tiny)),
                           LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))
    save_result(model, infer.load(tiny).tokenizer, out, info)
    return out


def _config(tiny, tmp_path):
    return config_from_dict({"base_model": str(tiny), "datasets": [{"path": "x.jsonl"}],
                             "output_dir": str(tmp_path), "system_prompt": "Be brief."})


PROBES = [[Message("user", "hi")], [Message("user", "the quick brown fox")]]


def test_merge_matches_adapter_and_the_check_catches_a_tampered_merge(tmp_path, tiny):
    from safetensors.torch import load_file, save_file

    from tunesmith import merge

    adapter = _adapter(tiny, tmp_path / "adapter", {"system_prompt": "Be brief."})
    config = _config(tiny, tmp_path)
    result = merge.run(config, PROBES, adapter_dir=adapter, out_dir=tmp_path / "merged")
    assert result.passed and 0 <= result.max_abs_diff < 1e-4 and result.prompts == 2
    assert not (tmp_path / "merged" / "adapter_config.json").exists()
    assert infer.load(tmp_path / "merged").system_prompt == "Be brief."  # chat on merged/ keeps the prompt
    # planted defect: the merged weights drift from what the adapter computes
    weights = tmp_path / "merged" / "model.safetensors"
    tensors = load_file(str(weights))
    name = next(k for k in tensors if k.endswith("o_proj.weight"))
    tensors[name] = tensors[name] + 0.05
    save_file(tensors, str(weights), metadata={"format": "pt"})
    bad = merge.verify(config, PROBES, adapter_dir=adapter, merged_dir=tmp_path / "merged")
    assert not bad.passed and bad.max_abs_diff > 1e-3
    with pytest.raises(merge.MergeCheckFailed, match="differs from its adapter"):
        merge.raise_if_failed(bad)


def test_merge_refuses_what_it_cannot_merge(tmp_path, tiny):
    from peft import PromptTuningConfig, TaskType, get_peft_model
    from transformers import AutoModelForCausalLM

    from tunesmith import merge

    config = _config(tiny, tmp_path)
    with pytest.raises(TunesmithError, match="not an adapter"):
        merge.run(config, PROBES, adapter_dir=tiny)
    prompt = get_peft_model(AutoModelForCausalLM.from_pretrained(str(tiny)),
                            PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=4))
    prompt.save_pretrained(tmp_path / "prompt")
    infer.load(tiny).tokenizer.save_pretrained(tmp_path / "prompt")
    with pytest.raises(TunesmithError, match="cannot be merged"):
        merge.run(config, PROBES, adapter_dir=tmp_path / "prompt")


def test_adapter_finds_its_base_from_the_recorded_info_not_a_stale_relative_path(tmp_path, tiny):
    adapter = _adapter(tiny, tmp_path / "adapter", {"base_model": str(tiny.resolve())})
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = "outputs/somewhere/else"  # relative to another working directory
    (adapter / "adapter_config.json").write_text(json.dumps(cfg))
    assert infer.load(adapter).kind == "adapter"
    (adapter / "tunesmith_model.json").unlink()
    with pytest.raises(TunesmithError, match="cannot load 'outputs/somewhere/else'"):
        infer.load(adapter)


def test_stop_ids_include_the_templates_end_of_turn_when_eos_differs(tmp_path):
    tok = build_tokenizer(tmp_path, template_text("chatml"), IM)  # eos </s>, no pad token
    build_model(tmp_path, tok, hidden=32)
    loaded = infer.load(tmp_path)
    assert set(loaded.tokenizer.convert_ids_to_tokens(loaded.eos_ids)) >= {"</s>", "<|im_end|>"}
    replies = infer.generate(loaded.model, loaded.tokenizer, [[Message("user", "hi")], [Message("user", "a b c d")]],
                             eos_ids=loaded.eos_ids, max_new_tokens=4, batch_size=2)
    assert len(replies) == 2 and all("<|im_end|>" not in r for r in replies)
