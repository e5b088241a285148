"""flywheel run: one iteration on a tiny model (mine -> build -> train -> evaluate -> gate -> lineage)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from flywheel_helpers import feedback, request, write_log
from tiny import build_chatml_model

from conftest import run_cli
from tunesmith.flywheel.files import sha256

pytestmark = pytest.mark.slow


def _conv(user: str, answer: str) -> dict:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    from tunesmith import evaluate
    from tunesmith.config import load_config

    root = tmp_path_factory.mktemp("fwrun")
    build_chatml_model(root / "base")
    (root / "train.jsonl").write_text("".join(json.dumps(_conv(f"tell me fact {i} about birds", f"fact {i}")) + "\n"
                                              for i in range(10)))
    (root / "qa.jsonl").write_text("".join(json.dumps(_conv(f"what is the capital of country {i}", "paris")) + "\n"
                                           for i in range(4)))
    config = {"base_model": str(root / "base"), "datasets": [{"path": str(root / "train.jsonl")}],
              "output_dir": str(root / "serving"), "eval_batch_size": 8, "max_steps": 2, "micro_batch_size": 2,
              "probes": {"max_new_tokens": 3},
              "eval_tasks": [{"name": "qa", "path": str(root / "qa.jsonl"), "scorer": "token_f1", "max_new_tokens": 4}]}
    (root / "run.yaml").write_text(yaml.safe_dump(config))
    evaluate.run(load_config(root / "run.yaml"), root / "base", name="baseline", out_dir=root / "baseline")
    write_log(root / "log.sqlite", [
        request("r1", "what colour is the sky at noon", "green"),
        request("r2", "what is the capital of country 2", "rome", created=1001.0),  # copies a golden row
        request("r3", "name a bird that cannot fly", "sparrow", created=1002.0),
    ], [feedback("r1", "down", 0.0, correction="blue"), feedback("r2", "down", 0.0),
        feedback("r3", "down", 0.0, correction="penguin")])
    return root


def test_one_iteration_end_to_end_with_lineage(project: Path) -> None:
    fw = {"run_config": "run.yaml", "db": "log.sqlite", "out": "iter1", "baseline": "baseline/eval_baseline.json",
          "replay_ratio": 0.5, "train": {"max_steps": 2}}
    (project / "FLYWHEEL.yaml").write_text(yaml.safe_dump(fw))
    first = run_cli("flywheel", "run", str(project / "FLYWHEEL.yaml"), timeout=900)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "3 review items" in first.stdout and "set `reviewed:`" in first.stdout
    assert not (project / "iter1" / "data").exists()
    queue = project / "iter1" / "mined" / "queue.jsonl"
    items = [json.loads(line) for line in queue.read_text().splitlines()]
    answers = {"r1": "blue", "r2": "paris", "r3": "penguin"}
    for item in items:
        item.update(verdict="correct", correction=answers[item["request_ids"][0]])
    queue.write_text("".join(json.dumps(i) + "\n" for i in items))
    (project / "FLYWHEEL.yaml").write_text(yaml.safe_dump({**fw, "reviewed": "iter1/mined/queue.jsonl"}))
    second = run_cli("flywheel", "run", str(project / "FLYWHEEL.yaml"), timeout=900)
    assert second.returncode in (0, 1), second.stderr[-2000:]
    lineage = json.loads((project / "iter1" / "lineage.json").read_text())
    gate = json.loads((project / "iter1" / "gate" / "gate.json").read_text())
    assert lineage["gate"]["passed"] == gate["passed"] and second.returncode == (0 if gate["passed"] else 1)
    assert ("gate: PASSED" if gate["passed"] else "gate: FAILED") in second.stdout
    # the golden copy (r2) was removed; r1 and r3 link request -> item -> dataset
    assert sorted(r for i in lineage["review_items"] for r in i["request_ids"]) == ["r1", "r3"]
    assert {i["id"] for i in lineage["review_items"]} == {i["id"] for i in items if i["request_ids"] != ["r2"]}
    # 2 new rows at replay ratio 0.5: 2 replay rows (counted after the golden copy left, so the share holds)
    assert lineage["dataset"]["counts"]["contaminated_removed"] == 1 and lineage["dataset"]["counts"]["replay"] == 2
    train_file = project / "iter1" / "data" / "train.jsonl"
    assert lineage["dataset"]["sha256"] == sha256(train_file)
    run_json = json.loads((project / "iter1" / "run" / "run.json").read_text())
    assert run_json["status"] == "completed" and lineage["run"]["run_json_sha256"] == sha256(project / "iter1" / "run" / "run.json")
    assert set(lineage["evaluation"]["metrics"]) == {"qa"}
    assert lineage["requests"]["db_sha256"] == sha256(project / "log.sqlite")
    assert "data_mix" not in run_json  # train.jsonl as built
    again = run_cli("flywheel", "run", str(project / "FLYWHEEL.yaml"))
    assert again.returncode == 1 and "lineage.json: a flywheel iteration already exists" in again.stderr


def test_replay_weight_trains_the_two_parts_through_dataset_mixing(project: Path) -> None:
    from tunesmith import flywheel
    from tunesmith.config.schema import FlywheelConfig

    queue = project / "iter1" / "mined" / "queue.jsonl"  # reviewed by the test above
    config = FlywheelConfig(run_config="run.yaml", db="log.sqlite", out="iter2", reviewed=str(queue),
                            baseline="baseline/eval_baseline.json", replay_ratio=0.5, replay_weight=3.0,
                            train={"max_steps": 1})
    result = flywheel.run(config, project, say=lambda line: None)
    parts = project / "iter2" / "data" / "parts"
    assert len((parts / "new.jsonl").read_text().splitlines()) == 2
    assert len((parts / "replay.jsonl").read_text().splitlines()) == 2
    mix = json.loads((project / "iter2" / "run" / "run.json").read_text())["data_mix"]
    # mass: new 2 x 1, replay 2 x 3 = 6 -> shares of the 4 rows: 2/8 x 4 = 1, 6/8 x 4 = 3
    assert [(d["rows"], d["used"], d["weight"]) for d in mix["datasets"]] == [(2, 1, 1.0), (2, 3, 3.0)]
    assert result.lineage is not None


def test_training_on_from_the_serving_adapter_lowers_the_learning_rate(tmp_path: Path) -> None:
    """The previous run's resolved learning rate (run.json beside the adapter) x continue_lr_scale; an explicit
    train.learning_rate wins; from the base, the run config's rate is kept."""
    from tunesmith.config.schema import FlywheelConfig
    from tunesmith.flywheel.run import _train_config

    (tmp_path / "run.yaml").write_text(yaml.safe_dump({"base_model": str(tmp_path / "base"), "learning_rate": 0.003,
                                                       "datasets": [{"path": str(tmp_path / "t.jsonl")}]}))
    (tmp_path / "serving" / "model").mkdir(parents=True)
    (tmp_path / "serving" / "run.json").write_text(json.dumps({"resolved": {"learning_rate": 0.005}}))
    train_file = tmp_path / "iter1" / "data" / "train.jsonl"
    base = {"run_config": "run.yaml", "db": "log.sqlite", "out": "iter1", "baseline": "b.json"}

    def lr(**kw):
        config = _train_config(FlywheelConfig(**{**base, **kw}), lambda p: tmp_path / p, train_file, tmp_path / "iter1")
        return config.learning_rate

    assert lr(previous_adapter="serving/model") == pytest.approx(0.005 * 0.04)
    assert lr(previous_adapter="serving/model", continue_lr_scale=0.1) == pytest.approx(0.0005)
    assert lr(previous_adapter="serving/model", train={"learning_rate": 0.001}) == 0.001
    (tmp_path / "serving" / "run.json").unlink()  # no record of the previous run: the run config's rate, scaled
    assert lr(previous_adapter="serving/model") == pytest.approx(0.003 * 0.04)
    assert lr() == 0.003
