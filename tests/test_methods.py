"""KTO, ORPO, reward model, distillation and full-fine-tuning DPO on a tiny model: each learns
what its method is for, through the same run directory, checkpoints and resume as SFT."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from tunesmith.config import config_from_dict
from tunesmith.errors import ConfigError
from tunesmith.train import run
from tunesmith.train.preference import kto_rows, orpo_rows, reward_rows

from tiny import build_model, build_tokenizer

CHATML = (Path(__file__).resolve().parents[1] / "src/tunesmith/tokenize/templates/chatml.jinja").read_text()
WORDS = "the city school was new and the quick brown fox jumps over lazy dog paris berlin weather today".split()


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("base")
    tok = build_tokenizer(root, CHATML, ["<|im_start|>", "<|im_end|>"], eos_token="<|im_end|>", pad_token="<|endoftext|>")
    build_model(root, tok)
    return root


@pytest.fixture(scope="module")
def other_teacher(base, tmp_path_factory) -> Path:
    """The base with perturbed weights: same tokenizer, different next-token distributions."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = tmp_path_factory.mktemp("teacher")
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    torch.manual_seed(5)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model.save_pretrained(root)
    AutoTokenizer.from_pretrained(base).save_pretrained(root)
    return root


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def config(base: Path, tmp: Path, data: Path, **over):
    raw = {"base_model": str(base), "datasets": [{"path": str(data)}], "output_dir": str(tmp / "run"),
           "sequence_len": 64, "micro_batch_size": 4, "max_steps": 8, "learning_rate": 5e-3, "bf16": False,
           "seed": 1, "audit": {"fail_on": "never"}, "lora_dropout": 0.0, **over}
    return config_from_dict(raw)


def logged(run_dir: Path, key: str) -> list[float]:
    rows = map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
    return [r[key] for r in rows if key in r]


def quiet(cfg, **kw):
    return run(cfg, quiet=True, say=lambda s: None, **kw)


def pairs(n: int, seed: int) -> list[dict]:
    """Preference pairs whose chosen answer starts with yes and rejected with no, in varied words."""
    rng = random.Random(seed)
    text = lambda k: " ".join(rng.choice(WORDS) for _ in range(k))  # noqa: E731
    return [{"prompt": f"Question {i}: {text(4)}?", "chosen": f"Yes, {text(3)}.", "rejected": f"No, {text(3)}."}
            for i in range(n)]


# ---------------------------------------------------------------------------------------------
# row layouts (fast): what TRL receives is tunesmith's ids, rearranged, never re-tokenized


def test_kto_rows_pair_each_completion_with_another_rows_completion():
    rows = [{"prompt_ids": [i], "completion_ids": [10 + i], "label": [i % 2]} for i in range(6)]
    out = kto_rows(rows, batch_size=3, seed=0)
    assert sorted(r["prompt_ids"][0] for r in out) == list(range(6))  # every row once
    for start in (0, 3):
        batch = out[start:start + 3]
        assert [r["KL_completion_ids"] for r in batch] == [batch[-1]["completion_ids"], batch[0]["completion_ids"],
                                                           batch[1]["completion_ids"]]
    assert all(r["label"] == bool(r["prompt_ids"][0] % 2) for r in out)


def test_orpo_and_reward_rows_keep_the_prompt_out_of_the_trained_labels():
    row = {"prompt_ids": [1, 2], "chosen_ids": [3, 4], "rejected_ids": [5]}
    orpo = orpo_rows([row])[0]
    assert orpo["chosen_input_ids"] == [1, 2, 3, 4] and orpo["chosen_labels"] == [-100, -100, 3, 4]
    assert orpo["rejected_input_ids"] == [1, 2, 5] and orpo["rejected_labels"] == [-100, -100, 5]
    assert reward_rows([row]) == [{"chosen_ids": [1, 2, 3, 4], "rejected_ids": [1, 2, 5]}]


# ---------------------------------------------------------------------------------------------
# each method learns


@pytest.mark.slow
def test_kto_raises_the_desirable_undesirable_margin_and_resumes(base, tmp_path):
    rows = [{"prompt": f"Say yes {i}", "completion": "Yes indeed." if i % 2 == 0 else "No way.", "label": i % 2 == 0}
            for i in range(16)]
    data = write_jsonl(tmp_path / "kto.jsonl", rows)
    cfg = config(base, tmp_path, data, method="kto", micro_batch_size=8, max_steps=6, save_steps=3, beta=0.5)
    first = quiet(cfg)
    margins = logged(tmp_path / "run", "rewards/margins")
    assert first.global_step == 6 and len(margins) == 6
    assert margins[0] == pytest.approx(0.0, abs=1e-6)  # policy == reference before the first update
    assert margins[-1] > margins[0] + 0.3, margins
    more = quiet(config(base, tmp_path, data, method="kto", micro_batch_size=8, max_steps=8, save_steps=3, beta=0.5), resume=True)  # extending a completed run: --resume
    assert more.resumed_from and more.resumed_from.endswith("checkpoint-6") and more.global_step == 8


@pytest.mark.slow
def test_orpo_raises_the_chosen_rejected_log_odds(base, tmp_path):
    data = write_jsonl(tmp_path / "pref.jsonl", [{"prompt": f"Say yes {i}", "chosen": "Yes indeed.",
                                                  "rejected": "No way."} for i in range(16)])
    result = quiet(config(base, tmp_path, data, method="orpo"))
    log_odds = logged(tmp_path / "run", "log_odds_chosen")
    assert result.global_step == 8 and len(log_odds) == 8
    assert log_odds[-1] > log_odds[0] + 0.3 and log_odds[-1] > 0, log_odds
    assert (result.model_dir / "adapter_config.json").is_file()


def _pair_accuracy(model, tokenizer, rows: list[dict]) -> float:
    from tunesmith.data.records import Message
    from tunesmith.tokenize import encode_preference

    model.eval()
    wins = 0
    for r in rows:
        enc = encode_preference([Message("user", r["prompt"])], [Message("assistant", r["chosen"])],
                                [Message("assistant", r["rejected"])], tokenizer)
        with torch.no_grad():
            good = model(input_ids=torch.tensor([enc.prompt_ids + enc.chosen_ids])).logits.item()
            bad = model(input_ids=torch.tensor([enc.prompt_ids + enc.rejected_ids])).logits.item()
        wins += good > bad
    return wins / len(rows)


@pytest.mark.slow
def test_reward_model_ranks_held_out_pairs_above_chance(base, tmp_path):
    from peft import AutoPeftModelForSequenceClassification
    from transformers import AutoModelForSequenceClassification

    data = write_jsonl(tmp_path / "pref.jsonl", pairs(48, seed=1))
    held_out = pairs(24, seed=2)
    result = quiet(config(base, tmp_path, data, method="rm", max_steps=16, learning_rate=1e-2))
    torch.manual_seed(1)
    untrained = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1, dtype=torch.float32)
    before = _pair_accuracy(untrained, result.tokenizer, held_out)
    after = _pair_accuracy(result.model, result.tokenizer, held_out)
    assert after >= 0.9 and after > before + 0.2, (before, after)
    assert logged(tmp_path / "run", "accuracy"), "RewardTrainer's pairwise accuracy is in metrics.jsonl"
    reloaded = AutoPeftModelForSequenceClassification.from_pretrained(result.model_dir, num_labels=1, dtype=torch.float32)
    assert _pair_accuracy(reloaded, result.tokenizer, held_out) == after
    info = json.loads((result.model_dir / "tunesmith_model.json").read_text())
    assert (info["method"], info["head"]) == ("rm", "reward")


def _teacher_gap(student, teacher, tokenizer, rows: list[dict]) -> float:
    """Mean KL(teacher || student) over the assistant tokens of ``rows``."""
    from tunesmith.data.records import Message
    from tunesmith.tokenize import encode_chat

    total, count = 0.0, 0
    for r in rows:
        enc = encode_chat([Message(**m) for m in r["messages"]], tokenizer)
        ids = torch.tensor([enc.input_ids])
        with torch.no_grad():
            s = torch.log_softmax(student(input_ids=ids).logits[0, :-1], -1)
            t = torch.log_softmax(teacher(input_ids=ids).logits[0, :-1], -1)
        for start, end in enc.spans:
            kl = (t.exp() * (t - s)).sum(-1)[start - 1:end - 1]
            total, count = total + kl.sum().item(), count + kl.numel()
    return total / count


@pytest.mark.slow
def test_distill_brings_the_student_closer_to_the_teacher(base, other_teacher, tmp_path):
    from transformers import AutoModelForCausalLM

    rows = [{"messages": [{"role": "user", "content": f"What is {i % 7} plus {i % 5}?"},
                          {"role": "assistant", "content": f"The answer is {i % 7 + i % 5}."}]} for i in range(24)]
    data = write_jsonl(tmp_path / "sft.jsonl", rows)
    cfg = config(base, tmp_path, data, method="distill", teacher_model=str(other_teacher), adapter="none",
                 learning_rate=2e-3, max_steps=10)
    result = quiet(cfg)
    held_out = [{"messages": [{"role": "user", "content": f"What is {a} plus {b}?"},
                              {"role": "assistant", "content": f"The answer is {a + b}."}]} for a, b in ((7, 6), (8, 2))]
    teacher = AutoModelForCausalLM.from_pretrained(other_teacher, dtype=torch.float32).eval()
    student = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).eval()
    before = _teacher_gap(student, teacher, result.tokenizer, held_out)
    after = _teacher_gap(result.model.eval(), teacher, result.tokenizer, held_out)
    assert after < 0.7 * before, (before, after)
    curve = logged(tmp_path / "run", "loss")
    assert result.global_step == 10 and curve[-1] < curve[0], curve


def test_distill_refuses_a_teacher_with_another_tokenizer(base, tmp_path):
    teacher = tmp_path / "teacher"
    tok = build_tokenizer(teacher, CHATML, ["<|im_start|>", "<|im_end|>"], eos_token="<|im_end|>",
                          pad_token="<|endoftext|>", vocab_size=520)
    build_model(teacher, tok)
    rows = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}] * 4
    cfg = config(base, tmp_path, write_jsonl(tmp_path / "sft.jsonl", rows), method="distill",
                 teacher_model=str(teacher), max_steps=1)
    with pytest.raises(ConfigError, match=r"teacher_model: the teacher's tokenizer is not the student's .* "
                                          r"must share a tokenizer"):
        quiet(cfg)


@pytest.mark.parametrize("method", ["dpo", "kto"])
def test_a_reference_model_with_another_tokenizer_is_refused(base, tmp_path, method):
    """DPO crashed (IndexError, exit 70) on a smaller vocabulary and trained against a meaningless reference on a
    larger one; KTO did either silently."""
    other = tmp_path / "other"
    tok = build_tokenizer(other, CHATML, ["<|im_start|>", "<|im_end|>"], eos_token="<|im_end|>",
                          pad_token="<|endoftext|>", vocab_size=520)
    build_model(other, tok)
    rows = ([{"prompt": f"Say yes {i}", "chosen": "Yes.", "rejected": "No."} for i in range(4)] if method == "dpo"
            else [{"prompt": f"Say yes {i}", "completion": "Yes.", "label": i % 2 == 0} for i in range(4)])
    cfg = config(base, tmp_path, write_jsonl(tmp_path / "d.jsonl", rows), method=method, ref_model=str(other),
                 max_steps=1, micro_batch_size=2)
    with pytest.raises(ConfigError, match=r"ref_model: the reference model's tokenizer is not the trained model's "
                                          r"\(520 vs"):
        quiet(cfg)


@pytest.mark.slow
def test_dpo_full_fine_tuning_uses_a_frozen_reference(base, other_teacher, tmp_path):
    data = write_jsonl(tmp_path / "pref.jsonl", [{"prompt": f"Say yes {i}", "chosen": "Yes indeed.",
                                                  "rejected": "No way."} for i in range(16)])
    result = quiet(config(base, tmp_path / "a", data, method="dpo", adapter="none", learning_rate=1e-3, beta=0.5))
    chosen, margins = logged(tmp_path / "a" / "run", "rewards/chosen"), logged(tmp_path / "a" / "run", "rewards/margins")
    assert result.trainable_params == result.total_params  # full fine-tuning
    assert chosen[0] == pytest.approx(0.0, abs=1e-6)  # the reference is the starting weights
    assert margins[-1] > margins[0] + 0.1 and margins[-1] > 0.1, margins
    explicit = config(base, tmp_path / "b", data, method="dpo", adapter="none", learning_rate=1e-3, beta=0.5,
                      ref_model=str(other_teacher), max_steps=1)
    quiet(explicit)
    assert abs(logged(tmp_path / "b" / "run", "rewards/chosen")[0]) > 1e-3  # another reference: log-ratio != 0


# ---------------------------------------------------------------------------------------------
# keys other tools write do what they say


def sft_data(tmp: Path) -> Path:
    rows = [{"messages": [{"role": "user", "content": f"What is {i % 7} plus {i % 5}?"},
                          {"role": "assistant", "content": f"The answer is {i % 7 + i % 5}."}]} for i in range(16)]
    return write_jsonl(tmp / "sft.jsonl", rows)


@pytest.mark.slow
def test_load_in_8bit_trains_lora_on_an_int8_base_and_save_only_model_skips_optimizer_state(base, tmp_path):
    cfg = config(base, tmp_path, sft_data(tmp_path), quantization="8bit", max_steps=4, save_steps=2,
                 save_only_model=True, learning_rate=1e-2)
    result = quiet(cfg)
    assert type(result.model.get_base_model().model.layers[0].self_attn.q_proj.base_layer).__name__ == "Linear8bitLt"
    curve = logged(tmp_path / "run", "loss")
    assert result.global_step == 4 and curve[-1] < curve[0], curve
    checkpoint = tmp_path / "run" / "checkpoints" / "checkpoint-2"
    assert (checkpoint / "adapter_model.safetensors").is_file() and not (checkpoint / "optimizer.pt").exists()


@pytest.mark.slow
def test_lora_model_dir_continues_training_the_given_adapter(base, tmp_path):
    from safetensors.torch import load_file

    data = sft_data(tmp_path)
    first = quiet(config(base, tmp_path / "a", data, max_steps=6, learning_rate=1e-2))
    saved = load_file(first.model_dir / "adapter_model.safetensors")
    cont = quiet(config(base, tmp_path / "b", data, max_steps=1, learning_rate=1e-12,
                        lora_model_dir=str(first.model_dir)))
    state = {k: v for k, v in cont.model.state_dict().items() if "lora_" in k}
    for name, value in saved.items():  # the adapter starts from the given weights (lr ~ 0: unchanged)
        match = [v for k, v in state.items() if k.replace(".default", "").endswith(name.split("base_model.model.")[-1])]
        assert match and torch.allclose(match[0], value, atol=1e-6), name
    fresh = logged(tmp_path / "a" / "run", "loss")[0]
    assert logged(tmp_path / "b" / "run", "loss")[0] < fresh - 0.1  # it starts where the first run ended


def test_overwrite_cache_tokenizes_again(base, tmp_path):
    from tunesmith import tokenize

    data = sft_data(tmp_path)
    assert not tokenize.run(config(base, tmp_path, data)).cache_hit
    assert tokenize.run(config(base, tmp_path, data)).cache_hit
    assert not tokenize.run(config(base, tmp_path, data, overwrite_cache=True)).cache_hit


def test_special_tokens_must_be_in_the_vocabulary(base, tmp_path):
    from tunesmith import tokenize

    data = sft_data(tmp_path)
    tok = tokenize.run(config(base, tmp_path, data, special_tokens={"pad_token": "<|im_end|>"})).tokenizer
    assert tok.pad_token == "<|im_end|>"
    with pytest.raises(ConfigError, match=r"special_tokens.pad_token: '<\|finetune_right_pad_id\|>' is not in the "
                                          r"tokenizer's vocabulary; tunesmith does not add tokens"):
        tokenize.run(config(base, tmp_path, data, special_tokens={"pad_token": "<|finetune_right_pad_id|>"}))


@pytest.mark.parametrize(("method", "adapter", "why"), [
    ("orpo", "prompt", "virtual tokens lengthen the logits"), ("distill", "prompt", "longer than the teacher's"),
    ("rm", "prefix", "no past key values")])
def test_method_and_adapter_pairs_a_trainer_cannot_train_are_refused_when_the_config_loads(method, adapter, why):
    """Each crashed deep in training (exit 70): a batch-size mismatch, unequal stacked logits, a PEFT error."""
    from tunesmith.config import config_from_dict

    extra = {"teacher_model": "t"} if method == "distill" else {}
    with pytest.raises(ConfigError, match=rf"adapter: method {method} cannot train a {adapter} adapter: .*{why}"):
        config_from_dict({"base_model": "m", "datasets": ["d.jsonl"], "method": method, "adapter": adapter, **extra})


def test_a_configured_lora_dropout_is_applied_by_dpo_and_the_default_is_off_and_said(base, tmp_path):
    """TRL's DPO/KTO/ORPO/reward/GKD configs turn dropout off by default: lora_dropout 0.5 trained exactly like 0
    while run.json recorded 0.5."""
    from tunesmith.config.defaults import resolve

    data = write_jsonl(tmp_path / "pref.jsonl", pairs(16, 0))
    losses = {}
    for p in (0.0, 0.5):
        quiet(config(base, tmp_path / str(p), data, method="dpo", lora_dropout=p, max_steps=3))
        losses[p] = logged(tmp_path / str(p) / "run", "loss")
    assert losses[0.0] != losses[0.5]
    unset = config(base, tmp_path, data, method="dpo")
    raw = {**unset.model_dump(exclude_unset=True), "lora_dropout": None}
    resolved = resolve(config_from_dict(raw), 100)
    assert resolved["lora_dropout"] == 0.0 and "disable_dropout" in resolved.sources["lora_dropout"]


def test_distill_refuses_rows_with_loss_weights_it_would_ignore(base, other_teacher, tmp_path):
    """TRL's GKD loss never reads the weights: the run trained bit-identically to the unweighted one, silently."""
    rows = [{"messages": [{"role": "user", "content": f"hi {i}"},
                          {"role": "assistant", "content": "hello", "loss_weight": 5.0 if i % 2 else 1.0}]}
            for i in range(4)]
    cfg = config(base, tmp_path, write_jsonl(tmp_path / "w.jsonl", rows), method="distill",
                 teacher_model=str(other_teacher), max_steps=1)
    with pytest.raises(ConfigError, match="distill: the rows carry per-message loss_weight, which the distillation"):
        quiet(cfg)


def test_sample_packing_on_a_method_that_does_not_pack_is_said(base, tmp_path):
    lines: list[str] = []
    data = write_jsonl(tmp_path / "pref.jsonl", pairs(8, 0))
    run(config(base, tmp_path, data, method="dpo", sample_packing=True, max_steps=1), quiet=True, say=lines.append)
    assert "warning: sample_packing: dpo does not pack rows (each row is batched on its own); the setting has no effect" in lines


@pytest.mark.parametrize(("method", "key"), [("distill", "teacher_model"), ("dpo", "ref_model")])
def test_a_missing_teacher_or_reference_folder_is_named_before_any_data_is_read(base, tmp_path, method, key):
    """It was found only after the data, the audit and the base weights had loaded, with the hub's 'Repo id'
    message; and the run directory was claimed."""
    rows = pairs(4, 0) if method == "dpo" else [{"messages": [{"role": "user", "content": "hi"},
                                                              {"role": "assistant", "content": "hello"}]}] * 4
    cfg = config(base, tmp_path, write_jsonl(tmp_path / "d.jsonl", rows), method=method,
                 **{key: str(tmp_path / "nope")}, max_steps=1)
    with pytest.raises(ConfigError, match=rf"{key}: {tmp_path / 'nope'}: no such folder \(nor a hub id\)"):
        quiet(cfg)
    assert not (tmp_path / "run" / "run.json").exists()
