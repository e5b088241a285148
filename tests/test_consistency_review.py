"""A trained model behaves the same after training: serve and export of prompt/prefix-tuning adapters."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import torch

from tunesmith import infer
from tunesmith.data.records import Message
from tunesmith.errors import TunesmithError

TEXTS = ["What is 3 plus 4?", "What is 1 plus 2? please tell me the answer now"]


@pytest.fixture(scope="module")
def runs(prompt_learning_runs) -> dict[str, Path]:
    return prompt_learning_runs


def _full_forward(model, ids: list[int]) -> torch.Tensor:
    """The next-token logits as training computed them: the whole sequence through the PEFT model."""
    with torch.inference_mode():
        return model(input_ids=torch.tensor([ids])).logits[0, -1].float()


@pytest.mark.parametrize("adapter", ["prompt", "prefix"])
def test_served_prompt_learning_adapter_decodes_as_the_trained_model(runs, adapter):
    """The engine fed PEFT's forward a one-token step on a cache: the virtual tokens went in again (prompt
    tuning) or replaced the cache (prefix tuning), and left-padded positions moved: logits off by up to 0.46."""
    from tunesmith.serve.config import ServeConfig
    from tunesmith.serve.engine import Engine
    from tunesmith.serve.kvbatch import KVBatch
    from tunesmith.serve.models import Models

    loaded = infer.load(runs[adapter])
    prompts = [infer.prompt_ids(loaded.tokenizer, [Message("user", t)], loaded.system_prompt) for t in TEXTS]
    models = Models(ServeConfig(model=str(runs[adapter]), port=0))
    engine = Engine(models, max_batch_size=4, max_queue=4)
    forced = [11, 12, 13]  # decode steps on the cache, fed the same tokens in every row
    with torch.inference_mode():
        batch, first = KVBatch.prefill(models.runner, prompts, engine.pad_id, engine._adapters([]),
                                       models.virtual)
        steps = [first] + [batch.step(models.runner, [t] * len(prompts), None) for t in forced]
    for row, ids in enumerate(prompts):
        for k, logits in enumerate(steps):
            diff = float((logits[row].float() - _full_forward(loaded.model, ids + forced[:k])).abs().max())
            assert diff < 1e-4, (adapter, row, k, diff)


@pytest.mark.parametrize("adapter", ["prefix"])
def test_served_prompt_learning_reply_logprobs_match_training(runs, adapter):
    """Through the running engine (two prompts of different lengths in one batch): each reply's first
    token and its log-probability are the trained model's."""
    from tunesmith.serve.config import ServeConfig
    from tunesmith.serve.engine import Engine, Job
    from tunesmith.serve.models import Models
    from tunesmith.serve.sequence import Params, Seq

    loaded = infer.load(runs[adapter])
    prompts = [infer.prompt_ids(loaded.tokenizer, [Message("user", t)], loaded.system_prompt) for t in TEXTS]
    engine = Engine(Models(ServeConfig(model=str(runs[adapter]), port=0)), max_batch_size=4, max_queue=4)
    served = engine.models.table[engine.models.base_name]
    done, firsts = threading.Event(), {}

    def sink(events):
        for event in events:
            if event.tokens and event.index not in firsts:
                firsts[event.index] = event.tokens[0]
            if event.finish_reason is not None and len(firsts) == len(prompts):
                done.set()

    seqs = [Seq(i, p, Params(max_tokens=2, temperature=0, logprobs=0), served, stream=True)
            for i, p in enumerate(prompts)]
    engine.start()
    try:
        engine.submit(Job(seqs, sink))
        assert done.wait(120)
    finally:
        engine.stop()
    for i, ids in enumerate(prompts):
        expected = torch.log_softmax(_full_forward(loaded.model, ids), dim=-1)
        token = int(expected.argmax())
        assert firsts[i].id == token and abs(firsts[i].logprob - float(expected[token])) < 1e-4


def test_serving_a_lora_adapter_on_a_prompt_learning_model_is_refused(runs, tmp_path):
    from tunesmith.serve.config import ServeConfig
    from tunesmith.serve.errors import APIError
    from tunesmith.serve.models import Models

    from serve_helpers import build_adapter

    lora = build_adapter(runs["prompt"].parent / "base", tmp_path / "lora", seed=1)
    models = Models(ServeConfig(model=str(runs["prompt"]), port=0, adapter_roots=(tmp_path,)))
    with pytest.raises(APIError, match="the served model is a prompt-tuning adapter"):
        models.add("other", lora)
    assert models.names() == [models.base_name]


@pytest.mark.parametrize("adapter", ["prompt", "prefix"])
def test_export_of_a_prompt_learning_adapter_is_refused_in_one_line(runs, adapter, tmp_path):
    """It crashed with AttributeError ('LlamaForCausalLM' object has no attribute 'merge_and_unload')."""
    from tunesmith.export.run import ExportOptions, run

    with pytest.raises(TunesmithError, match="adapter_config.json: a (PROMPT|PREFIX)_TUNING adapter adds virtual") as err:
        run(ExportOptions(runs[adapter], "hf", out_dir=tmp_path / "out"))
    assert "\n" not in str(err.value) and not (tmp_path / "out").exists()


def test_serve_takes_sampling_defaults_from_generation_config_as_the_vllm_hand_off_does(tmp_path):
    """``vllm serve --generation-config FOLDER`` (export/vllm.py) samples a request without temperature/top_p
    with the folder's generation_config.json; tunesmith serve used 1.0/1.0 whatever the folder said."""
    from types import SimpleNamespace

    from tunesmith.serve import protocol as p
    from tunesmith.serve.config import ServeConfig
    from tunesmith.serve.models import Models
    from tunesmith.serve.routes import _params

    from serve_helpers import build_served_model

    folder = build_served_model(tmp_path / "tiny")
    gen = json.loads((folder / "generation_config.json").read_text())
    (folder / "generation_config.json").write_text(json.dumps({**gen, "temperature": 0.0, "top_p": 0.5}))
    models = Models(ServeConfig(model=str(folder), port=0))
    state = SimpleNamespace(config=models.config, models=models)
    served = models.get(models.base_name)
    unset = _params(state, served, p.ChatRequest(model=served.name, messages=[{"role": "user", "content": "hi"}]),
                    5, None, None, None)
    assert (unset.temperature, unset.top_p) == (0.0, 0.5)
    given = _params(state, served, p.ChatRequest(model=served.name, messages=[{"role": "user", "content": "hi"}],
                                                 temperature=0.7, top_p=1.0), 5, None, None, None)
    assert (given.temperature, given.top_p) == (0.7, 1.0)
