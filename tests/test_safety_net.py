"""Issue 15's training-side detectors, each with a planted defect: sequence_len beyond the model's
context (item 3), plateau / too-fast loss (4), config lint (5), refusal and JSON shares (9),
eval-task contamination in train (8), bf16 on GPUs without it (7), sample generations (10)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tunesmith.config import config_from_dict
from tunesmith.errors import ConfigError

from test_train import CHATML, make_config, sft_rows, write_jsonl
from tiny import build_model, build_tokenizer


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("netbase")
    tok = build_tokenizer(root, CHATML, ["<|im_start|>", "<|im_end|>"], eos_token="<|im_end|>", pad_token="<|endoftext|>")
    build_model(root, tok)  # max_position_embeddings 1024
    return root


# --- item 3: sequence_len vs the model's context ------------------------------------------

def test_sequence_len_beyond_the_context_without_rope_scaling_is_refused(base, tmp_path):
    from tunesmith.train import preflight

    with pytest.raises(ConfigError, match=r"sequence_len: 2048 is more than the model's context "
                       r"\(max_position_embeddings 1024, no RoPE scaling\).*rope_scaling: \{type: linear, factor: 2\}"):
        preflight.run(make_config(base, tmp_path, sequence_len=2048))
    preflight.run(make_config(base, tmp_path, sequence_len=1024))  # at the limit: fine
    with pytest.raises(ConfigError, match=r"1024 x rope_scaling.factor 1.5 = 1536.*factor to 2"):
        preflight.run(make_config(base, tmp_path, sequence_len=2048, rope_scaling={"type": "linear", "factor": 1.5}))


def test_configured_rope_scaling_is_applied_to_the_model(base, tmp_path):
    from tunesmith.train import context, preflight
    from tunesmith.train.model import load_base

    cfg = make_config(base, tmp_path, sequence_len=2048, rope_scaling={"type": "linear", "factor": 2})
    preflight.run(cfg)
    window = context.of(cfg)
    assert (window.limit, window.scaled_by, window.rope_type) == (2048, "config", "linear")
    plain = load_base(make_config(base, tmp_path))
    scaled = load_base(cfg)
    assert scaled.config.rope_parameters["rope_type"] == "linear" and scaled.config.rope_parameters["factor"] == 2.0
    torch.testing.assert_close(scaled.model.rotary_emb.inv_freq, plain.model.rotary_emb.inv_freq / 2)


def test_p99_row_length_beyond_the_context_is_a_warning():
    from tunesmith.train.context import Context, length_warning

    window = Context(1024, "default", 1.0, "none")
    stats = {"token_lengths": {"train": {"p50": 300, "p99": 1500}}}
    assert "p99 length is 1500 tokens, beyond the model's context of 1024" in length_warning(window, stats)
    assert length_warning(window, {"token_lengths": {"train": {"p99": 1024}}}) is None
    assert length_warning(Context(1024, "linear", 2.0, "config"), stats) is None  # 2048 with the scaling


def test_train_prints_and_records_the_p99_warning_for_its_base(tmp_path):
    """The wiring of the warning above: ``train`` reads the context of its own base model (here a
    128-position model), prints the warning and records it with the context in run.json."""
    from tunesmith.train.run import _context

    tok = build_tokenizer(tmp_path / "tok", CHATML, ["<|im_start|>", "<|im_end|>"])
    build_model(tmp_path / "model", tok, max_positions=128)
    config = config_from_dict({"base_model": str(tmp_path / "model"), "datasets": ["d.jsonl"], "sequence_len": 128})
    said: list[str] = []
    record = _context(config, {"token_lengths": {"train": {"p50": 60, "p99": 200}}}, said.append)
    assert said == [f"warning: {record['warning']}"] and "p99 length is 200 tokens" in record["warning"]
    assert record["max_position_embeddings"] == 128 and record["limit"] == 128
    assert "warning" not in _context(config, {"token_lengths": {"train": {"p99": 100}}}, said.append)


# --- item 5: config lint against the seed's ranges -----------------------------------------

def _cfg(**over):
    return config_from_dict({"base_model": "tiny", "datasets": ["d.jsonl"], "micro_batch_size": 4,
                             "gradient_accumulation_steps": 2, **over})


def _lint(config, rows: int = 10_000, world: int = 1, **values):
    from tunesmith.train import lint
    from tunesmith.config.defaults import resolve

    return lint.check(config, {**resolve(config, rows).values, **values}, rows, world=world)


def test_lint_is_quiet_on_the_seeds_defaults():
    assert _lint(_cfg()) == []  # LoRA 2e-4, batch 4 x 2 = 8, 3 epochs
    assert _lint(_cfg(method="dpo")) == []  # 5e-7


def test_lint_flags_each_planted_range_violation():
    [lr] = _lint(_cfg(learning_rate=2e-3))
    assert lr.startswith("learning_rate: 0.002 is outside 5e-05..0.0005 for adapter lora:")
    [dpo] = _lint(_cfg(method="dpo", learning_rate=2e-4))
    assert "outside 1e-07..5e-06 for dpo" in dpo
    [batch] = _lint(_cfg(gradient_accumulation_steps=1))
    assert batch.startswith("effective batch 4 (micro_batch_size 4 x gradient_accumulation_steps 1 x 1 process(es)) "
                            "is below 8")
    assert _lint(_cfg(gradient_accumulation_steps=1), world=2) == []  # 4 x 1 x 2 processes = 8
    [epochs] = _lint(_cfg(num_epochs=8))
    assert epochs.startswith("num_epochs: 8 epochs of sft: more than 5 epochs")
    assert _lint(_cfg(num_epochs=8, max_steps=100)) == []  # max_steps decides the length
    [full] = _lint(_cfg(adapter="none"), rows=1200)
    assert full.startswith("adapter: none with 1,200 training rows: full fine-tuning on fewer than 5,000 rows")
    assert _lint(_cfg(adapter="none"), rows=6000) == []


def test_lint_skip_acknowledges_a_deliberate_deviation_only():
    deviating = dict(learning_rate=2e-3, gradient_accumulation_steps=1)
    assert len(_lint(_cfg(**deviating))) == 2
    [left] = _lint(_cfg(**deviating, lint_skip=["learning_rate"]))
    assert left.startswith("effective batch 4")
    assert _lint(_cfg(**deviating, lint_skip=["learning_rate", "effective_batch"])) == []
    with pytest.raises(ConfigError, match="lint_skip"):
        _cfg(lint_skip=["learning_rat"])


# --- item 10: sample generations during training ---------------------------------------------

def _sampler(base, logs, lines, autocast=None):
    from transformers import AutoTokenizer

    from tunesmith.data.records import Message
    from tunesmith.tokenize import end_of_turn_ids
    from tunesmith.train.samples import SampleGenerations

    tok = AutoTokenizer.from_pretrained(str(base))
    convs = [(Message("user", "What is 2 plus 3?"),), (Message("user", "hello"),)]
    return SampleGenerations(tok, convs, end_of_turn_ids(tok), logs.append, lines.append, source="validation",
                             max_new_tokens=8, autocast=autocast), tok


def test_samples_run_under_the_training_autocast_with_bf16_frozen_weights(base):
    """On a CPU with bf16 units (AMX) LoRA's frozen weights are stored in bf16 (train.speed) and the
    model runs only under bf16 autocast: the samples at each evaluation used to be generated without
    it, and `make demo` crashed at the first epoch's end ("expected m1 and m2 to have the same dtype")."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tunesmith.train import speed

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32),
                           LoraConfig(r=4, target_modules="all-linear", lora_dropout=0.0))
    speed.prepare(model.get_base_model(), model, speed.Speedups(bf16_frozen_weights=True))
    model.train()
    logs, lines = [], []
    with pytest.raises(RuntimeError, match="dtype"):  # the precondition: without autocast it cannot run
        _sampler(base, logs, lines)[0].sample(model, 1)
    record = _sampler(base, logs, lines, autocast=torch.bfloat16)[0].sample(model, 2)
    assert record == logs[-1] and record["step"] == 2 and model.training
    assert [s["finish_reason"] in ("stop", "length") for s in record["samples"]] == [True, True]


@pytest.mark.parametrize(("bias", "rate"), [(-100.0, 0.0), (100.0, 1.0)], ids=["never-stops", "always-stops"])
def test_samples_report_the_stop_token_rate(base, bias, rate):
    """A model that never emits its end-of-turn token (planted with a +-100 logit on it) has
    stop_rate 0, one that always does 1; the record lands in metrics.jsonl's format and the console."""
    from transformers import AutoModelForCausalLM

    logs, lines = [], []
    sampler, tok = _sampler(base, logs, lines)
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    stop = tok.convert_tokens_to_ids("<|im_end|>")

    def plant(module, inputs, output):
        output[..., stop] += bias
        return output

    model.lm_head.register_forward_hook(plant)
    model.train()
    record = sampler.sample(model, 7)
    assert model.training  # put back in training mode
    assert record == logs[0] and record["step"] == 7 and record["stop_rate"] == rate
    assert [s["finish_reason"] for s in record["samples"]] == ["stop" if rate else "length"] * 2
    assert [s["tokens"] for s in record["samples"]] == [0 if rate else 8] * 2
    assert lines[0].startswith(f"samples at step 7: {int(2 * rate)}/2 stopped on an end-of-turn token within 8 tokens")


def test_sample_budget_covers_the_longest_reference_reply(base):
    """A validation reply longer than the old fixed 48 tokens got cut off and read as 'never stops'."""
    from transformers import AutoTokenizer

    from tunesmith.data.records import Message, Record, Source
    from tunesmith.train.samples import SAMPLE_MARGIN, SAMPLE_MAX_TOKENS, SAMPLE_MIN_TOKENS, prompts, reply_budget

    tok = AutoTokenizer.from_pretrained(str(base))
    long_reply = " ".join(f"station {i} needs {i + 1} machines" for i in range(5))
    n = len(tok(long_reply, add_special_tokens=False)["input_ids"])
    assert SAMPLE_MIN_TOKENS < n < SAMPLE_MAX_TOKENS - SAMPLE_MARGIN
    rows = [Record("sft", Source("dev.jsonl", i + 1), "messages", (Message("user", q), Message("assistant", a)))
            for i, (q, a) in enumerate([("hi", "ok"), ("plan", long_reply), ("later", long_reply * 40)])]
    assert [c[-1].content for c in prompts(rows, 2)] == ["hi", "plan"]
    assert reply_budget(tok, rows, 2) == n + SAMPLE_MARGIN  # the third row is not sampled
    assert reply_budget(tok, rows[:1], 1) == SAMPLE_MIN_TOKENS
    assert reply_budget(tok, rows, 3) == SAMPLE_MAX_TOKENS


def test_training_logs_samples_at_each_evaluation_and_records_the_run_facts(base, tmp_path):
    from tunesmith.train import run

    dev = write_jsonl(tmp_path / "dev.jsonl", sft_rows(6))
    golden = write_jsonl(tmp_path / "golden.jsonl", [sft_rows(24)[5], {"messages": [
        {"role": "user", "content": "Name the capital of France in one word"}, {"role": "assistant", "content": "Paris"}]}])
    task = {"name": "golden", "path": str(golden), "scorer": "exact_match"}
    cfg = make_config(base, tmp_path, max_steps=4, eval_steps=2, eval_datasets=[{"path": str(dev)}], eval_tasks=[task])
    lines: list[str] = []
    run(cfg, quiet=True, say=lines.append)
    assert any(line.startswith(f"warning: 1 of 2 eval task rows also stand in the training data (e.g. {golden}:1: "
                               f"exact copy of {tmp_path / 'data.jsonl'}:6); evaluate will leave them out")
               for line in lines), [
        line for line in lines if "eval task" in line]
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    samples = [r for r in records if "samples" in r]
    assert [r["step"] for r in samples] == [2, 4]
    assert all(len(r["samples"]) == 3 and 0 <= r["stop_rate"] <= 1 and r["samples_from"] == "validation"
               for r in samples)
    assert samples[0]["samples"][0]["prompt"] == "What is 0 plus 0?"
    facts = json.loads((tmp_path / "run" / "run.json").read_text())
    assert facts["validation"] == {"source": "eval_datasets", "rows": 6}
    assert facts["context"]["max_position_embeddings"] == 1024 and facts["context"]["limit"] == 1024
    assert any(line.startswith("effective batch 4") for line in facts["lint"])
    assert facts["contamination"]["contaminated"] == 1 and facts["contamination"]["hits"][0]["task"] == "golden"


def test_contaminated_eval_tasks_with_action_fail_stop_train_before_training(base, tmp_path):
    """Issue 15 item 8: the evaluation's guard runs in train too; a golden row copied from the
    training data (planted) stops the run before any step."""
    from tunesmith.audit.contamination import ContaminationError
    from tunesmith.train import run

    golden = write_jsonl(tmp_path / "golden.jsonl", [sft_rows(24)[3]])
    cfg = make_config(base, tmp_path, eval_tasks=[{"name": "golden", "path": str(golden), "scorer": "exact_match"}],
                      contamination={"action": "fail"})
    with pytest.raises(ContaminationError, match=r"(?s)1 of 1 eval rows also stand in the training data.*"
                       r"golden.jsonl:1: eval task 'golden': exact copy of training row \S*data.jsonl:4"):
        run(cfg, quiet=True, say=lambda line: None)
    assert not (tmp_path / "run" / "model").exists()
    assert "loss" not in (tmp_path / "run" / "metrics.jsonl").read_text() if (tmp_path / "run" / "metrics.jsonl").exists() else True


# --- item 7: bf16 only where the GPU has it ------------------------------------------------

@pytest.mark.parametrize(("capability", "name"), [((7, 5), "fp16"), ((7, 0), "fp16"), ((8, 0), "bf16"), ((9, 0), "bf16")])
def test_auto_precision_follows_the_compute_capability(capability, name):
    """A T4 / V100 (7.x) reports bf16 through emulation; auto must pick fp16 with loss scaling there."""
    from tunesmith.models.precision import Device, choose

    chosen = choose("auto", Device(True, capability, "GPU"))
    assert chosen.name == name and not chosen.use_cpu
    assert chosen.compute_dtype == (torch.bfloat16 if name == "bf16" else torch.float16)  # QLoRA's compute dtype
    assert chosen.autocast_dtype == chosen.compute_dtype  # what the in-training samples run under


def test_explicit_bf16_on_a_gpu_without_it_is_refused():
    from tunesmith.models.precision import Device, choose

    with pytest.raises(ConfigError, match=r"bf16: true, but Tesla T4 \(compute capability 7.5\) has no bf16"):
        choose(True, Device(True, (7, 5), "Tesla T4"))
    assert choose(True, Device(True, (8, 6), "RTX 3090")).name == "bf16"
    assert choose(False, Device(True, (7, 5), "Tesla T4")).name == "fp32"
    assert choose("auto", Device(False, None, "cpu", cpu_fast_bf16=False)).compute_dtype == torch.float32
    assert choose("auto", Device(False, None, "cpu", cpu_fast_bf16=False)).autocast_dtype is None
    assert choose("auto", Device(False, None, "cpu", cpu_fast_bf16=True)).autocast_dtype == torch.bfloat16


def test_a_onednn_instruction_set_cap_below_bf16_means_fp32(monkeypatch):
    """ONEDNN_MAX_CPU_ISA=AVX2 makes oneDNN emulate bf16 matmuls (~7x slower than fp32 here): auto must pick fp32."""
    from tunesmith.models import precision

    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert not precision.cpu_has_fast_bf16()
    assert not precision.Device.here().cpu_fast_bf16 or torch.cuda.is_available()
    if not torch.cuda.is_available():
        chosen = precision.choose("auto")
        assert chosen.name == "fp32" and "ONEDNN_MAX_CPU_ISA=avx2" in chosen.reason
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "default")
    assert precision.onednn_isa_cap() is None
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    monkeypatch.setenv("DNNL_MAX_CPU_ISA", "avx512_core_amx")
    assert precision.onednn_isa_cap() == "avx512_core_amx"
    assert precision.cpu_has_fast_bf16() == bool(torch.cpu._is_amx_tile_supported()
                                                 or torch.cpu._is_avx512_bf16_supported())
