"""The judge end to end against tunesmith's own server: ``tunesmith evaluate --compare`` (the real
CLI) with ``judge.base_url`` pointing at a real ``tunesmith serve`` (uvicorn on 127.0.0.1, a
tiny model, llguidance-constrained decoding of the rubric's response_format, a real SQLite log).

A random 2-layer model cannot grade anything, which is the point: its replies are verdicts only
because the server decoded them under the schema the judge asked for, and the judge's strict
parser accepts every one of them."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
import yaml

pytest.importorskip("fastapi")
pytest.importorskip("llguidance")

from conftest import run_cli  # noqa: E402
from serve_helpers import build_served_model  # noqa: E402
from tiny import build_model, build_tokenizer  # noqa: E402

pytestmark = pytest.mark.slow

ROWS = [("what is two plus two", "4"), ("name the capital of france", "paris")]


def _conv(user: str, answer: str) -> dict:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from tunesmith import serve
    from tunesmith.tokenize.tokenizer import template_text

    root = tmp_path_factory.mktemp("judge_served")
    # the judge: room for a 600-token rubric prompt and a verdict whose reason is <= 300 characters
    judge = build_served_model(root / "judge", max_positions=4096)
    tok = build_tokenizer(root / "base", template_text("chatml"), ["<|im_start|>", "<|im_end|>"],
                          eos_token="<|im_end|>", pad_token="<pad>")
    build_model(root / "base", tok, hidden=32)
    build_served_model(root / "run" / "model")  # the "fine-tune": another architecture width, other replies
    (root / "train.jsonl").write_text("".join(json.dumps(_conv(f"tell me fact {i} about birds", f"fact {i}")) + "\n"
                                              for i in range(4)))
    (root / "open.jsonl").write_text("".join(json.dumps(_conv(q, a)) + "\n" for q, a in ROWS))
    config = serve.ServeConfig(model=str(judge), served_model_name="judge", port=0, db=root / "serve.sqlite",
                               max_tokens_limit=2048)
    with serve.start(config) as server:
        yield root, server


def _logged(db: Path, expected: int) -> list:
    """The judge's requests in the serve log (a row is committed at most ``log_commit_timeout_s`` late)."""
    from tunesmith.serve import read_log

    deadline = time.monotonic() + 10
    while True:
        rows = read_log(db, model="judge")
        if len(rows) >= expected or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def test_tunesmith_serve_is_the_judge_for_rubric_scoring_and_pairwise(served) -> None:
    from tunesmith.config.schema import JudgeConfig
    from tunesmith.evaluate.judge import (
        Pair, fingerprint, judge_pairs, load_rubric, open_client, pairwise_format, pairwise_messages, rubric_format,
        rubric_messages,
    )
    from tunesmith.evaluate.judge.cache import VerdictCache, cache_key

    root, server = served
    judge = {"base_url": server.url + "/v1", "model": "judge", "max_tokens": 1536, "timeout": 300, "workers": 4}
    config = {"base_model": str(root / "base"), "datasets": [{"path": str(root / "train.jsonl")}],
              "output_dir": str(root / "run"), "probes": {"enabled": False}, "judge": judge,
              "eval_tasks": [{"name": "open", "path": str(root / "open.jsonl"), "scorer": "judge", "max_new_tokens": 4}]}
    (root / "judge.yaml").write_text(yaml.safe_dump(config))
    proc = run_cli("evaluate", str(root / "judge.yaml"), "--compare", "base", "model", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "base won" in proc.stdout and "(0 failed)" in proc.stdout
    ev, rubric = root / "run" / "eval", load_rubric()

    # rubric scoring of both models: every verdict parsed on the first try, asked with the schema, in range
    graded = []
    for name in ("base", "model"):
        task = json.loads((ev / f"eval_{name}.json").read_text())["tasks"]["open"]
        assert task["metrics"]["judge_failure_rate"] == 0.0, task["extra"]["failures"]
        assert (task["extra"]["judged"], task["extra"]["structured"], task["extra"]["format_refused"]) == (2, 2, None)
        rows = [json.loads(line) for line in (ev / f"generations_{name}.jsonl").read_text().splitlines()]
        assert len(rows) == len(ROWS)
        for row in rows:
            d = row["detail"]
            assert (d["failed"], d["attempts"], d["cached"], d["structured"]) == (None, 1, False, True)
            assert all(c.scale[0] <= d["verdict"]["scores"][c.name] <= c.scale[1] for c in rubric.criteria)
            assert set(d["verdict"]["flags"]) == {"hallucination"}
            graded.append(rubric_messages(rubric, row["prompt"], row["output"], row["gold"]))
    outputs = {name: [json.loads(x)["output"] for x in (ev / f"generations_{name}.jsonl").read_text().splitlines()]
               for name in ("base", "model")}
    assert outputs["base"] != outputs["model"]  # so no rubric or pairwise request repeats another

    # pairwise: every pair judged in both orders, no failure
    pairs = [json.loads(line) for line in (ev / "pairwise_base_vs_model.jsonl").read_text().splitlines()]
    assert len(pairs) == len(ROWS)
    assert all(p["a_first"] in ("a", "b", "tie") and p["b_first"] in ("a", "b", "tie") and not p["errors"]
               for p in pairs)
    compare = json.loads((ev / "compare_base_vs_model.json").read_text())
    assert (compare["overall"]["judged"], compare["overall"]["failed"]) == (2, 0)
    assert compare["judge"] == {"model": "judge", "rubric": "default", "rubric_fingerprint": fingerprint(rubric),
                                "structured": "auto", "format_refused": None}
    asked = [pairwise_messages(rubric, p["prompt"], first, second, p["reference"])
             for p in pairs for first, second in ((p["a"], p["b"]), (p["b"], p["a"]))]

    # the serve log holds exactly the judge's requests, each with its response_format, each answered "stop"
    logged = _logged(root / "serve.sqlite", len(graded) + len(asked))
    assert sorted(json.dumps(r.messages) for r in logged) == sorted(json.dumps(m) for m in graded + asked)
    for r in logged:
        expected = rubric_format(rubric) if "## Reply to grade" in r.messages[-1]["content"] else pairwise_format()
        assert r.params["response_format"] == expected and r.finish_reason == "stop"

    # every verdict is in the SQLite cache, stored as the server replied it, under the judge serve names
    client = open_client(JudgeConfig(**judge), fingerprint(rubric), ev / "judge_cache.sqlite")
    served_root = next(m["root"] for m in httpx.get(server.url + "/v1/models").json()["data"] if m["id"] == "judge")
    assert client.identity == f"{server.url}/v1|{served_root}|1536" and served_root
    replies = {json.dumps(r.messages): r.reply for r in logged}
    with VerdictCache(ev / "judge_cache.sqlite") as cache:
        assert len(cache) == len(graded) + len(asked)
        for messages in graded + asked:
            key = cache_key("judge", fingerprint(rubric), 0.0, messages, client.identity)
            assert cache.get(key) == replies[json.dumps(messages)]

    # so judging the pairs again asks the server nothing and gives the same verdicts
    try:
        again = judge_pairs(client, rubric, [Pair("open", p["prompt"], p["reference"], p["a"], p["b"]) for p in pairs])
    finally:
        client.close()
    assert [(v.a_first, v.b_first) for v in again] == [(p["a_first"], p["b_first"]) for p in pairs]
    assert len(_logged(root / "serve.sqlite", 0)) == len(logged)

    # and the same judge asked plainly does not write a verdict: the schema is what made them parse
    import openai

    from tunesmith.evaluate.judge import VerdictError, parse_rubric

    plain = openai.OpenAI(base_url=judge["base_url"], api_key="unused", max_retries=0).chat.completions.create(
        model="judge", messages=graded[0], max_tokens=40, temperature=0)
    with pytest.raises(VerdictError):
        parse_rubric(plain.choices[0].message.content or "", rubric)
