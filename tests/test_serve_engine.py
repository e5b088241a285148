"""The batching engine without HTTP: continuous batching is exact, and a failing step never kills it."""

from __future__ import annotations

import threading

import pytest

pytest.importorskip("llguidance")

from tunesmith import infer  # noqa: E402
from tunesmith.data.records import Message  # noqa: E402
from tunesmith.serve.config import ServeConfig  # noqa: E402
from tunesmith.serve.engine import Engine, Job  # noqa: E402
from tunesmith.serve.models import Models  # noqa: E402
from tunesmith.serve.sequence import Params, Seq  # noqa: E402

from serve_helpers import build_served_model  # noqa: E402


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    folder = build_served_model(tmp_path_factory.mktemp("engine") / "tiny")
    models = Models(ServeConfig(model=str(folder), port=0))
    eng = Engine(models, max_batch_size=4, max_queue=16)
    eng.start()
    yield eng, folder
    eng.stop()


def _submit(eng, prompt, max_tokens):
    done, out = threading.Event(), {}

    def sink(events):
        for event in events:
            if event.finish_reason is not None:
                out.update(text=event.text, reason=event.finish_reason, error=event.error)
                done.set()

    served = eng.models.table[eng.models.base_name]
    eng.submit(Job([Seq(0, prompt, Params(max_tokens=max_tokens, temperature=0), served, stream=False)], sink))
    return done, out


def test_sequences_joining_a_running_batch_decode_exactly_as_alone(engine):
    eng, folder = engine
    loaded = infer.load(folder)
    texts = ["hello", "what is the capital of france please tell me", "thanks", "the quick brown fox", "hi there"]
    prompts = [infer.prompt_ids(loaded.tokenizer, [Message("user", t)], loaded.system_prompt) for t in texts]
    # staggered arrivals (5 sequences, batch of 4): rows join and leave a batch of different lengths
    runs = [_submit(eng, p, 12 - i) for i, p in enumerate(prompts)]
    for i, (done, out) in enumerate(runs):
        assert done.wait(120)
        reference = infer.generate(loaded.model, loaded.tokenizer, [[Message("user", texts[i])]],
                                   eos_ids=loaded.eos_ids, system_prompt=loaded.system_prompt,
                                   max_new_tokens=12 - i)[0]
        assert out["text"].strip() == reference


def test_a_failing_step_fails_its_requests_and_the_engine_goes_on(engine):
    eng, folder = engine
    vocab = eng.models.vocab_size
    done, out = _submit(eng, [1, 2, vocab + 5], 4)  # an id past the embedding table: the forward raises
    assert done.wait(120) and out["reason"] == "error" and "internal error" in out["error"]
    loaded = infer.load(folder)
    done, out = _submit(eng, infer.prompt_ids(loaded.tokenizer, [Message("user", "hi")], loaded.system_prompt), 4)
    assert done.wait(120) and out["reason"] in ("stop", "length") and out["error"] is None
    assert eng._thread.is_alive() and not eng.active and not eng.jobs


def test_a_prompt_that_cannot_run_fails_alone_and_the_running_batch_goes_on(engine):
    """A prefill that raised failed every request in flight and every queued one: now only its own
    request fails; one admitted with it is retried alone, and the running batch is untouched."""
    eng, folder = engine
    loaded = infer.load(folder)
    served = eng.models.table[eng.models.base_name]
    ids = lambda text: infer.prompt_ids(loaded.tokenizer, [Message("user", text)], loaded.system_prompt)
    texts = ["what is the capital of france please tell me", "hi there"]
    refs = [infer.generate(loaded.model, loaded.tokenizer, [[Message("user", t)]], eos_ids=loaded.eos_ids,
                           system_prompt=loaded.system_prompt, max_new_tokens=12)[0] for t in texts]
    outs = [{"text": ""} for _ in range(3)]
    done = [threading.Event() for _ in range(3)]

    def sink(i):
        def take(events):
            for event in events:
                outs[i]["text"] += event.text or ""
                if event.finish_reason is not None:
                    outs[i].update(reason=event.finish_reason, error=event.error)
                    done[i].set()
                elif i == 0 and "queued_at" not in outs[0]:  # the first one is running: two more arrive
                    outs[0]["queued_at"] = len(outs[0]["text"])
                    eng.submit(job(1, [1, 2, eng.models.vocab_size + 5]))  # the forward raises on it
                    eng.submit(job(2, ids(texts[1])))
        return take

    def job(i, prompt):
        return Job([Seq(0, prompt, Params(max_tokens=12, temperature=0), served, stream=True)], sink(i))

    eng.submit(job(0, ids(texts[0])))
    assert all(d.wait(120) for d in done)
    assert outs[1]["reason"] == "error" and "internal error" in outs[1]["error"]
    assert outs[0]["error"] is None and outs[0]["text"].strip() == refs[0]  # was failed with the bad prompt
    assert outs[2]["error"] is None and outs[2]["text"].strip() == refs[1]  # admitted with it: retried alone
    assert eng._thread.is_alive() and not eng.active and not eng.jobs


def test_json_properties_are_written_in_the_schema_order(engine):
    from tunesmith.serve.grammar import Grammars, compile_format

    eng, _ = engine
    served = eng.models.table[eng.models.base_name]
    schema = {"type": "object", "properties": {"zeta": {"type": "integer"}, "alpha": {"type": "integer"}},
              "required": ["zeta", "alpha"], "additionalProperties": False}
    grammar = compile_format({"type": "json_schema", "json_schema": {"name": "x", "schema": schema}})
    tok, grammars = served.tokenizer, Grammars(eng.models.vocab_size)
    for text, ok in (('{"zeta": 1, "alpha": 2}', True), ('{"alpha": 2, "zeta": 1}', False)):
        matcher = grammars.matcher(grammar, tok, served.eos_ids)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert (matcher.validate_tokens(ids) == len(ids)) is ok, text
