"""Memory, time and cost of the plan, against values computed by hand for Llama-2-7B."""

from __future__ import annotations

import pytest

from tunesmith.plan.adapters import AdapterSettings, trainable
from tunesmith.plan.memory import GIB, Setup, estimate
from tunesmith.plan.shapes import PlanError, model_shape
from tunesmith.plan.timing import estimate_time, flops_per_token

N = 6_738_415_616  # Llama-2-7B parameters
BLOCK_LINEAR = 32 * (4 * 4096 * 4096 + 3 * 4096 * 11008)  # decoder linear weights
MATMUL = BLOCK_LINEAR + 32000 * 4096  # + lm_head
RUNTIME = 0.75 * GIB


def _setup(**kw) -> Setup:
    base = dict(method="sft", adapter="none", weights="fp32", mixed=True, optimizer="adamw_torch",
                gradient_checkpointing=False, micro_batch=1, seq_len=512, mask=False, lora_r=16, lora_dropout=0.05,
                num_virtual_tokens=20, device="gpu")
    return Setup(**{**base, **kw})


def _estimate(adapter: str = "none", **kw):
    shape = model_shape("meta-llama/Llama-2-7b-hf")
    return estimate(shape, trainable(shape, AdapterSettings(adapter, 16, "all-linear", None, 20)), _setup(adapter=adapter, **kw))


def _parts(est) -> dict[str, float]:
    return {c.name: c.bytes for c in est.components}


def test_full_fine_tuning_mixed_precision_is_twenty_bytes_a_parameter_at_the_optimizer_step() -> None:
    est = _estimate()
    parts = _parts(est)
    assert parts["weights"] == 4 * N and parts["gradients"] == 4 * N and parts["optimizer"] == 8 * N
    assert parts["weight_copies"] == 2 * MATMUL  # autocast's 16-bit copies
    # the optimizer step (gradients + foreach temporary = 8 B/param) outweighs the forward here
    assert est.peak_bytes == pytest.approx(4 * N + 8 * N + RUNTIME + 8 * N)


def test_layer_activations_by_hand() -> None:
    est = _estimate(gradient_checkpointing=False)
    # per token and layer (full fine-tuning, bf16 autocast): norms 2*(4h+4) + 2*4h, SDPA (2q+2kv)*2 + 4*heads,
    # MLP 3*2i, q/k/v and gate/up 16-bit input copies 5*2h, down_proj input 2i
    h, i = 4096, 11008
    per_layer = 2 * (4 * h + 4) + 2 * 4 * h + (4 * h) * 2 + 4 * 32 + 3 * 2 * i + 5 * 2 * h + 2 * i
    final = 512 * (4 * h + 4) * 2
    assert _parts(est)["activations"] == 512 * 32 * per_layer + final


def test_gradient_accumulation_keeps_gradients_through_the_forward() -> None:
    alone, accumulating = _estimate(), _estimate(accumulate=True)
    p = _parts(accumulating)
    forward = p["activations"] + p["weight_copies"] + p["logits"]
    assert accumulating.peak_bytes == pytest.approx(4 * N + 8 * N + RUNTIME + 4 * N + max(forward, 4 * N))
    assert accumulating.peak_bytes > alone.peak_bytes - 4 * N


def test_zero_sharding_divides_what_it_shards() -> None:
    single = _parts(_estimate())
    for sharding, divided in (("zero1", {"optimizer"}), ("zero2", {"optimizer", "gradients"}),
                              ("zero3", {"optimizer", "gradients", "weights"})):
        parts = _parts(_estimate(gpus=4, sharding=sharding))
        for name in ("weights", "gradients", "optimizer"):
            assert parts[name] == pytest.approx(single[name] / 4 if name in divided else single[name]), (sharding, name)
    by = _estimate(gpus=4, sharding="zero3").by_sharding
    assert by["none"] > by["zero1"] > by["zero2"] > by["zero3"]
    assert by["zero3"] == pytest.approx(RUNTIME + (4 * N + 8 * N + 8 * N) / 4)


def test_qlora_stores_nf4_linear_weights_and_fp32_rest() -> None:
    parts = _parts(_estimate("qlora", weights="nf4", gradient_checkpointing=True))
    nf4 = 0.5 + 1 / 64 + 4 / (64 * 256)
    assert parts["weights"] == pytest.approx(BLOCK_LINEAR * nf4 + (N - BLOCK_LINEAR) * 4)
    lora = 32 * 16 * (4 * 8192 + 3 * (4096 + 11008))  # r * (in + out) over q,k,v,o,gate,up,down
    assert lora == 39_976_960
    assert parts["adapter"] == parts["gradients"] == 4 * lora and parts["optimizer"] == 8 * lora
    assert parts["weight_copies"] == 2 * 32000 * 4096  # only lm_head is a 16-bit autocast copy


def test_dpo_full_keeps_a_reference_copy_and_lora_does_not() -> None:
    full = _parts(_estimate(method="dpo"))
    assert full["reference"] == full["weights"]
    lora = _estimate("lora", method="dpo")
    assert "reference" not in _parts(lora) and any("adapter disabled" in n for n in lora.notes)
    sft = _parts(_estimate("lora"))
    assert _parts(lora)["activations"] == pytest.approx(2 * sft["activations"])  # chosen + rejected


def test_optimizers_and_unknown_optimizer() -> None:
    assert _parts(_estimate(optimizer="paged_adamw_8bit"))["optimizer"] == 2 * N
    assert _parts(_estimate(optimizer="sgd"))["optimizer"] == 0
    with pytest.raises(PlanError, match="optimizer: 'adamq' has no known state size"):
        _estimate(optimizer="adamq")


def test_checkpointing_keeps_layer_inputs_and_one_layer() -> None:
    plain, ckpt = _parts(_estimate("lora")), _parts(_estimate("lora", gradient_checkpointing=True))
    final = 512 * (4 * 4096 + 4)
    per_layer = (plain["activations"] - final) / 512 / 32
    assert ckpt["activations"] == pytest.approx(512 * (32 * 4096 * 4 + per_layer) + final)


def test_flops_time_and_cost_by_hand() -> None:
    shape = model_shape("meta-llama/Llama-2-7b-hf")
    attention = 4 * 32 * 4096 * 256  # q.k^T + attn @ v, 2 FLOPs a multiply-add, 256 keys
    full, words = flops_per_token(shape, 256, full=True, checkpointing=False, dpo=False)
    assert full == 6 * MATMUL + 3 * attention and "6N + 3A" in words
    lora, _ = flops_per_token(shape, 256, full=False, checkpointing=True, dpo=True)
    assert lora == (4 * MATMUL + 3 * attention) + 2 * (2 * MATMUL + attention)
    t = estimate_time(shape, 1_000_000, 256, True, False, False, peak_tflops=312, devices=2, mfu=0.4, price=2.5)
    hours = full * 1_000_000 / (2 * 312e12 * 0.4) / 3600
    assert t.hours == pytest.approx(hours) and t.cost == pytest.approx(hours * 2 * 2.5)
