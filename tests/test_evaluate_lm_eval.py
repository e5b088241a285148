"""lm-eval-harness tasks through `evaluate` (``eval_tasks: - lm_eval: {tasks: [...]}``), offline,
on a local task definition and a local dataset file. Skipped when lm-eval is not installed."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tiny import build_model, build_tokenizer
from tunesmith.config import config_from_dict
from tunesmith.errors import ConfigError

pytest.importorskip("lm_eval")

FIXTURES = Path(__file__).parent / "fixtures" / "lm_eval"


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path]:
    from tunesmith.tokenize.tokenizer import template_text

    root = tmp_path_factory.mktemp("lmeval")
    tok = build_tokenizer(root / "model", template_text("chatml"), ["<|im_start|>", "<|im_end|>"],
                          eos_token="<|im_end|>", pad_token="<pad>")
    build_model(root / "model", tok, hidden=32)
    tasks = root / "tasks"
    tasks.mkdir()
    for name in ("tiny_capitals.yaml", "tiny_echo.yaml", "tiny_two_filters.yaml"):
        text = (FIXTURES / name).read_text().replace("DATA_FILE", str(FIXTURES / "capitals.jsonl"))
        (tasks / name).write_text(text)
    return root, tasks


def _config(root: Path, tasks: Path, names: list[str], **options: object):
    return config_from_dict({
        "base_model": str(root / "model"), "datasets": [{"path": str(FIXTURES / "capitals.jsonl")}],
        "output_dir": str(root / "out"), "probes": {"enabled": False},
        "eval_tasks": [{"lm_eval": {"tasks": names, "include_path": str(tasks), **options}}]})


def _loglikelihood(model, tok, context: str, continuation: str) -> float:
    """Sum of log-probabilities of the continuation's tokens after the context (lm-eval's split)."""
    import torch

    whole = tok(context + continuation, add_special_tokens=False)["input_ids"]
    ctx = tok(context, add_special_tokens=False)["input_ids"]
    cont = whole[len(ctx):]
    with torch.no_grad():
        logits = model(torch.tensor([whole])).logits[0].log_softmax(-1)
    return float(sum(logits[len(ctx) - 1 + i, t] for i, t in enumerate(cont)))


def test_local_task_runs_on_the_evaluated_model(setup) -> None:
    from tunesmith import evaluate, infer

    root, tasks = setup
    result = evaluate.run(_config(root, tasks, ["tiny_capitals", "tiny_echo"]), str(root / "model"))
    mc, gen = result.tasks["lm_eval:tiny_capitals"], result.tasks["lm_eval:tiny_echo"]
    assert (mc.score.n, mc.score.main, gen.score.main) == (3, "acc", "exact_match")
    assert mc.score.metrics["acc"] == pytest.approx(sum(r.value for r in mc.score.rows) / 3)
    assert mc.rows[0].prompt == "Question: What is the capital of France?\nAnswer:"
    assert [r.gold for r in mc.rows] == ["Paris", "Berlin", "Rome"]
    # lm-eval scored the model tunesmith loaded: its log-likelihoods are ours, computed by hand
    loaded = infer.load(root / "model")
    lls = [resp[0] for resp in mc.score.rows[0].detail["resps"]]
    ours = [_loglikelihood(loaded.model, loaded.tokenizer, mc.rows[0].prompt, f" {c}") for c in ("Paris", "Berlin", "Rome")]
    assert lls == pytest.approx(ours, abs=1e-3)
    assert mc.rows[0].output == ["Paris", "Berlin", "Rome"][max(range(3), key=lambda i: ours[i])]
    assert all(0.0 <= v <= 1.0 and math.isfinite(v) for v in gen.score.metrics.values())
    assert (root / "out" / "eval" / "eval_model.json").is_file()


def test_a_task_with_two_filters_keeps_each_filters_figure_and_its_rows_once(setup) -> None:
    """lm-eval logs each document once per filter: the rows were doubled (6 of 3 documents) and the
    second filter's figure was dropped."""
    from tunesmith import evaluate

    root, tasks = setup
    task = evaluate.run(_config(root, tasks, ["tiny_two_filters"]), str(root / "model")).tasks[
        "lm_eval:tiny_two_filters"]
    assert task.score.n == 3 and len(task.rows) == 3 and len(task.score.rows) == 3
    assert task.score.main == "exact_match" and task.score.extra["filter"] == "strict"
    assert task.score.metrics == {"exact_match": 0.0, "exact_match (loose)": 1.0}
    assert task.score.metrics["exact_match"] == sum(r.correct for r in task.score.rows) / 3


def test_limit(setup) -> None:
    from tunesmith import evaluate

    root, tasks = setup
    result = evaluate.run(_config(root, tasks, ["tiny_capitals"], limit=2), str(root / "model"))
    assert result.tasks["lm_eval:tiny_capitals"].score.n == 2


@pytest.mark.slow
def test_unknown_task_is_a_config_error(setup) -> None:
    """Not in include_path: looked up among lm-eval's bundled tasks too (indexing them takes a while)."""
    from tunesmith import evaluate

    root, tasks = setup
    with pytest.raises(ConfigError, match=r"lm_eval.tasks: unknown lm-eval task\(s\) tiny_capitols"):
        evaluate.run(_config(root, tasks, ["tiny_capitols"]), str(root / "model"))
