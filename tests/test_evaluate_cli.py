"""`tunesmith evaluate` end to end through the real CLI on a tiny model: eval/ files, report,
--base, --compare with a judge (a scripted OpenAI-compatible server on 127.0.0.1), bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import run_cli
from judge_server import JudgeServer, Reply, user_text, verdict
from tiny import build_model, build_tokenizer

pytestmark = pytest.mark.slow


def _conv(user: str, answer: str, **extra: object) -> dict:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}], **extra}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    from tunesmith.tokenize.tokenizer import template_text

    root = tmp_path_factory.mktemp("evalcli")
    tok = build_tokenizer(root / "base", template_text("chatml"), ["<|im_start|>", "<|im_end|>"],
                          eos_token="<|im_end|>", pad_token="<pad>")
    build_model(root / "base", tok, hidden=32)
    (root / "train.jsonl").write_text("".join(json.dumps(_conv(f"tell me fact {i} about birds", f"fact {i}")) + "\n"
                                              for i in range(10)))
    qa = [_conv(f"what is the capital of country {i}", "paris", category="europe" if i % 2 else "asia") for i in range(4)]
    qa.append(_conv("tell me fact 3 about birds", "fact 3"))  # also in the training data
    (root / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in qa))
    probe_items = [{"id": f"p{i}", "category": "arithmetic" if i < 2 else "refusal", "prompt": f"What is {i} + 1?",
                    "check": {"type": "number", "value": i + 1} if i < 2 else {"type": "refusal"}} for i in range(3)]
    (root / "probes.jsonl").write_text("".join(json.dumps(p) + "\n" for p in probe_items))
    (root / "sums.jsonl").write_text("".join(json.dumps(_conv(f"what is {i} plus {i}", str(2 * i))) + "\n"
                                             for i in range(3)))
    config = {
        "base_model": str(root / "base"), "datasets": [{"path": str(root / "train.jsonl")}],
        "output_dir": str(root / "run"), "eval_batch_size": 8,
        "probes": {"max_new_tokens": 3, "path": str(root / "probes.jsonl")},
        "eval_tasks": [{"name": "qa", "path": str(root / "qa.jsonl"), "scorer": "token_f1", "max_new_tokens": 4},
                       {"name": "sums", "path": str(root / "sums.jsonl"), "scorer": "numeric", "max_new_tokens": 4}],
    }
    (root / "run.yaml").write_text(yaml.safe_dump(config))
    return root


def test_evaluate_writes_every_row_and_a_report(project: Path) -> None:
    proc = run_cli("evaluate", str(project / "run.yaml"), "--model", str(project / "base"), "--base", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "held-out tasks" in proc.stdout and "stop_rate" in proc.stdout and "probes" in proc.stdout
    assert "contaminated rows left out" in proc.stdout
    assert "token_f1 95 % interval" in proc.stdout  # each headline with its interval (evaluate.interval)
    assert "note: qa has 4 rows: the 95 % interval of its token_f1 is" in proc.stdout.replace("\n", " ")
    ev = project / "run" / "eval"
    summary = json.loads((ev / "eval_model.json").read_text())
    qa = summary["tasks"]["qa"]
    assert qa["n"] == 4 and qa["excluded"] == 1 and qa["main"] == "token_f1"
    assert set(qa["categories"]) == {"asia", "europe"} and qa["categories"]["asia"]["n"] == 2
    assert summary["tasks"]["sums"]["format"] == "parse_rate"
    assert qa["interval"]["n"] == 4 and qa["interval"]["low"] <= qa["metrics"]["token_f1"] <= qa["interval"]["high"]
    assert summary["contamination"]["contaminated"] == 1 and summary["probes"]["n"] == 3
    assert set(summary["probes"]["categories"]) == {"arithmetic", "refusal"}
    rows = [json.loads(line) for line in (ev / "generations_model.jsonl").read_text().splitlines()]
    assert len(rows) == 4 + 3 and {"finish_reason", "tokens", "score", "detail", "category", "source"} <= set(rows[0])
    qa_rows = [r for r in rows if r["task"] == "qa"]
    stop = sum(r["finish_reason"] == "stop" for r in qa_rows) / len(qa_rows)
    assert qa["health"]["stop_rate"] == pytest.approx(stop)  # the figure traces to its rows
    assert all(r["tokens"] <= 4 for r in rows)
    assert len((ev / "probes_model.jsonl").read_text().splitlines()) == summary["probes"]["n"]
    assert json.loads((ev / "contamination.json").read_text())["hits"][0]["source"].endswith("qa.jsonl:5")
    page = (ev / "report.html").read_text()
    assert "Generation health" in page and "<svg" in page and "qa: token_f1 per category" in page
    assert 'title="95 % interval"' in page
    assert "<script" not in page and "https://" not in page


def test_compare_and_judge_scorer_through_a_judge_server(project: Path) -> None:
    def script(request: dict, n: int) -> Reply:
        text = user_text(request)
        return Reply(content='{"winner": "1"}' if "## Reply 1" in text else verdict(4, 3, 5))

    with JudgeServer(script) as server:
        config = yaml.safe_load((project / "run.yaml").read_text())
        config["judge"] = {"base_url": server.base_url, "model": "judge-1", "backoff": 0.01}
        config["probes"] = {"enabled": False}
        config["eval_tasks"].append({"name": "open", "path": str(project / "sums.jsonl"), "scorer": "judge",
                                     "max_new_tokens": 3})
        (project / "judge.yaml").write_text(yaml.safe_dump(config))
        proc = run_cli("evaluate", str(project / "judge.yaml"), "--compare", "base", str(project / "base"), timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
    ev = project / "run" / "eval"
    assert "pairwise: base vs" in proc.stdout and "orders agree" in proc.stdout
    pairs = [json.loads(line) for line in next(ev.glob("pairwise_base_vs_*.jsonl")).read_text().splitlines()]
    assert len(pairs) == 4 + 3 + 3  # qa (one row left out as contaminated), sums, open
    assert all(p["a_first"] == "a" and p["b_first"] == "b" and p["result"] == "tie" for p in pairs)  # always "1"
    compare = json.loads(next(ev.glob("compare_base_vs_*.json")).read_text())
    assert compare["overall"]["position_bias"]["share"] == 1.0 and compare["overall"]["ties"] == 10
    judged = [json.loads(line) for line in (ev / "generations_base.jsonl").read_text().splitlines()
              if json.loads(line)["task"] == "open"]
    assert all(r["detail"]["verdict"]["scores"] == {"correctness": 4, "completeness": 3, "format": 5} for r in judged)
    summary = json.loads((ev / "eval_base.json").read_text())["tasks"]["open"]
    assert summary["metrics"]["judge_correctness"] == pytest.approx(0.75)
    assert summary["extra"]["distribution"]["format"] == {"5": 3}
    assert next(ev.glob("report_base_vs_*.html")).read_text().count("first shown wins") == 1


def test_bad_input_is_one_line_with_file_and_line(project: Path, tmp_path: Path) -> None:
    from tunesmith import evaluate
    from tunesmith.config import config_from_dict, load_config
    from tunesmith.errors import ConfigError, DataError

    config = yaml.safe_load((project / "run.yaml").read_text())
    bad_rows = tmp_path / "nogold.jsonl"
    bad_rows.write_text(json.dumps(_conv("q", "1")) + "\n" + json.dumps({"messages": [{"role": "user", "content": "q"}]})
                        + "\n" + json.dumps(_conv("q2", "one")) + "\n")
    config["eval_tasks"] = [{"name": "sums", "path": str(bad_rows), "scorer": "numeric"}]
    with pytest.raises(DataError) as info:
        evaluate.run(config_from_dict(config))  # before any model is loaded
    lines = str(info.value).splitlines()
    assert lines[0] == ("2 of 3 rows of eval task 'sums' cannot be scored (each must end with an assistant turn "
                        "holding the gold answer):")
    assert lines[1].endswith("nogold.jsonl:2: messages has no assistant turn (nothing to train on for sft)")
    assert lines[2].endswith("nogold.jsonl:3: messages the gold answer 'one' is not a number (numeric scorer)")
    rubric = tmp_path / "rubric.yaml"
    rubric.write_text("name: r\nsystem: s\ntemplate: t\npairwise: {system: s, template: t}\ncriteria:\n"
                      "  - name: correctness\n    description: right?\n")
    config = yaml.safe_load((project / "run.yaml").read_text())
    config["judge"] = {"base_url": "http://127.0.0.1:9/v1", "model": "j", "rubric": str(rubric)}
    with pytest.raises(ConfigError, match=r"rubric.yaml:6: criteria\[0\].scale: required"):
        evaluate.compare(config_from_dict(config), "base", "model")  # before any generation
    (tmp_path / "b.yaml").write_text(f"base_model: m\ndatasets: [{{path: {bad_rows}}}]\neval_tasks:\n"
                                     f"  - name: t\n    path: {bad_rows}\n    scorer: exact_mtch\n")
    with pytest.raises(ConfigError, match=r"b.yaml:6: eval_tasks\[0\].scorer: must be one of json, label, .*"
                                          r"did you mean 'exact_match'"):
        load_config(tmp_path / "b.yaml")
    proc = run_cli("evaluate", str(tmp_path / "b.yaml"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and "b.yaml:6: eval_tasks[0].scorer" in proc.stderr


def test_a_judge_that_is_down_keeps_every_generation(project: Path, tmp_path: Path) -> None:
    from judge_server import free_port

    from tunesmith import evaluate
    from tunesmith.config import config_from_dict
    from tunesmith.evaluate.judge import JudgeError

    config = yaml.safe_load((project / "run.yaml").read_text())
    config.update(output_dir=str(tmp_path / "run"), probes={"enabled": False},
                  judge={"base_url": f"http://127.0.0.1:{free_port()}/v1", "model": "j", "max_retries": 0,
                         "max_consecutive_failures": 2})
    config["eval_tasks"].append({"name": "open", "path": str(project / "sums.jsonl"), "scorer": "judge",
                                 "max_new_tokens": 3})
    with pytest.raises(JudgeError, match="cannot connect"):
        evaluate.run(config_from_dict(config), str(project / "base"))
    rows = [json.loads(line) for line in (tmp_path / "run/eval/generations_model.jsonl").read_text().splitlines()]
    assert [r["task"] for r in rows].count("open") == 3 and len(rows) == 4 + 3 + 3


def test_a_trained_model_is_prompted_with_its_own_template_and_differences_are_said(
        project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The template file edited after training: evaluate prompts the model as it was trained (as serve and chat
    do), not with the edited file. Seen through the generation cache, keyed by the prompt's token ids: the second
    evaluation finds every reply of the first. An explicit system prompt override is used, and said."""
    from tunesmith.tokenize.tokenizer import template_text

    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path / "cache"))
    template = tmp_path / "chat.jinja"
    template.write_text(template_text("chatml"))
    config = {**yaml.safe_load((project / "run.yaml").read_text()), "chat_template": str(template),
              "output_dir": str(tmp_path / "run"), "eval_cache": True, "max_steps": 2,
              "system_prompt": "You answer briefly.", "audit": {"fail_on": "never"}}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    assert run_cli("train", str(tmp_path / "run.yaml"), "--quiet", timeout=600).returncode == 0
    first = run_cli("evaluate", str(tmp_path / "run.yaml"), timeout=900)
    assert first.returncode == 0 and "note" not in first.stderr, first.stderr[-2000:]
    summary = lambda: json.loads((tmp_path / "run" / "eval" / "eval_model.json").read_text())  # noqa: E731
    assert summary()["cached_replies"] == 0 and summary()["notes"] == []
    template.write_text(template.read_text().replace("'<|im_start|>assistant\\n'", "'<|im_start|>assistant\\nSure: '"))
    assert "Sure: " in template.read_text()
    second = run_cli("evaluate", str(tmp_path / "run.yaml"), "--set", "system_prompt=You answer briefly.", timeout=900)
    assert second.returncode == 0, second.stderr[-2000:]
    rows = sum(t["n"] for t in summary()["tasks"].values()) + summary()["probes"]["n"]
    assert summary()["cached_replies"] == rows  # the very prompts of the first evaluation
    assert f"note (model): chat_template: {tmp_path / 'run' / 'model'} was trained with another chat template " \
           f"than the config's ({template}); it is prompted with its own" in second.stderr
    third = run_cli("evaluate", str(tmp_path / "run.yaml"), "--set", "system_prompt=You are a pirate.", timeout=900)
    assert third.returncode == 0, third.stderr[-2000:]
    assert "system_prompt: prompted with 'You are a pirate.'" in third.stderr
    assert "was trained with 'You answer briefly.'" in summary()["notes"][-1]
