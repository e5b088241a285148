"""infer generates prompt- and prefix-tuned models as they were trained (evaluate, chat, train's samples).

``model.generate`` on a PEFT prefix-tuning model under transformers 5 dropped the learned prefix (first-token
logits off by 0.37 from the model's full forward) and, for prompt tuning, moved a left-padded row's positions
(off by 9.5e-4); infer now runs them greedily on the transformer with the virtual tokens prefilled once."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tunesmith import infer
from tunesmith.data.records import Message

TEXTS = ["What is 3 plus 4?", "What is 1 plus 2? please tell me the answer now"]  # the first is left-padded
NEW = 8


@pytest.fixture(scope="module")
def runs(prompt_learning_runs) -> dict[str, Path]:
    return prompt_learning_runs


def _reference(model, prompt: list[int], eos_ids: list[int]) -> tuple[list[int], list[torch.Tensor]]:
    """Greedy ids without a cache, each step the whole sequence through the PEFT model (as training ran it),
    up to and including the first stop id; and each step's next-token logits."""
    ids, steps = list(prompt), []
    with torch.inference_mode():
        for _ in range(NEW):
            steps.append(model(input_ids=torch.tensor([ids])).logits[0, -1].float())
            ids.append(int(steps[-1].argmax()))
            if ids[-1] in eos_ids:
                break
    return ids[len(prompt):], steps


@pytest.mark.parametrize("adapter", ["prompt", "prefix"])
def test_infer_generates_a_prompt_learning_model_as_its_full_forward(runs, adapter):
    from tunesmith.infer.generate import _generate_batch, _reply

    loaded = infer.load(runs[adapter])
    model, tok, eos = loaded.model, loaded.tokenizer, loaded.eos_ids
    prompts = [infer.prompt_ids(tok, [Message("user", t)], loaded.system_prompt) for t in TEXTS]
    assert len(prompts[0]) < len(prompts[1])
    refs = [_reference(model, p, eos) for p in prompts]

    # each forward on the transformer (the prefill, then one per decode step): each row's next-token logits
    seen: list[torch.Tensor] = []
    hook = model.get_base_model().register_forward_hook(lambda _m, _a, out: seen.append(out.logits[:, -1].float()))
    try:
        from transformers import GenerationConfig

        greedy = GenerationConfig(do_sample=False, max_new_tokens=NEW, eos_token_id=list(eos),
                                  pad_token_id=tok.pad_token_id)
        batch = _generate_batch(model, prompts, tok.pad_token_id, greedy)
    finally:
        hook.remove()
    assert len(seen) == max(len(ids) for ids, _ in refs)
    for row, (ids, steps) in enumerate(refs):
        for k, logits in enumerate(steps):
            diff = float((seen[k][row] - logits).abs().max())
            assert diff < 1e-4, (adapter, row, k, diff)
        stop = next((k + 1 for k, t in enumerate(batch[row]) if t in eos), len(batch[row]))
        assert batch[row][:stop] == ids, (adapter, row)

    # the public path (sorted, batched): the same replies, finish reasons and lengths
    details = infer.generate_details(model, tok, [[Message("user", t)] for t in TEXTS], eos_ids=eos,
                                     system_prompt=loaded.system_prompt, max_new_tokens=NEW, batch_size=2)
    assert details == [_reply(tok, ids, eos) for ids, _ in refs]
    assert infer.generate(model, tok, [[Message("user", t)] for t in TEXTS], eos_ids=eos,
                          system_prompt=loaded.system_prompt, max_new_tokens=NEW) == [g.text for g in details]


@pytest.mark.parametrize("kind", ["prompt", "prefix"])
def test_rows_that_stop_at_different_steps_get_the_full_forwards_replies(runs, kind):
    """Random (perturbed) weights and virtual tokens, so replies vary; one row stops early, two are left-padded."""
    from peft import PrefixTuningConfig, PromptTuningConfig, get_peft_model

    from tunesmith.infer.generate import _reply

    loaded = infer.load(runs["prompt"].parent / "base")
    torch.manual_seed(0)
    make = PromptTuningConfig if kind == "prompt" else PrefixTuningConfig
    config = make(task_type="CAUSAL_LM", num_virtual_tokens=3)
    with torch.no_grad():
        for p in loaded.model.parameters():
            p.add_(torch.randn_like(p) * 0.5)
        model = get_peft_model(loaded.model, config).eval()
        for p in model.prompt_encoder.parameters():
            p.copy_(torch.randn_like(p))
    texts = ["hi", *TEXTS]
    prompts = [infer.prompt_ids(loaded.tokenizer, [Message("user", t)]) for t in texts]
    free = [_reference(model, p, [])[0] for p in prompts]
    assert len({tuple(f) for f in free}) == len(free) and len(set(free[0])) > 1  # not one repeated token
    eos = [free[0][next(k for k, t in enumerate(free[0]) if k > 0 and t not in free[0][:k])]]
    want = [_reply(loaded.tokenizer, _reference(model, p, eos)[0], eos) for p in prompts]
    got = infer.generate_details(model, loaded.tokenizer, [[Message("user", t)] for t in texts], eos_ids=eos,
                                 max_new_tokens=NEW, batch_size=3)
    assert got == want and got[0].finish_reason == "stop" and got[0].tokens < NEW
