"""Peak memory per device of a training step, from the model's shapes and the run's settings.

Components: base weights (by storage dtype), adapter weights, gradients, optimizer states,
activations kept for the backward pass, the vocabulary-sized loss tensors, the DPO reference
model, and the runtime (CUDA context / the CPU process baseline). Sharding (ZeRO / FSDP) divides
the sharded components by the number of devices. Assumptions live in ``memory.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from tunesmith.config.methods import method_spec
from tunesmith.config.adapters import AdapterSpec, adapter_spec
from tunesmith.plan.activations import layer_bytes_per_token, residual_bytes
from tunesmith.plan.adapters import Trainable
from tunesmith.plan.shapes import ModelShape, PlanError
from tunesmith.config.yaml_load import load_table

GIB = 1024**3
SHARDING = ("none", "zero1", "zero2", "zero3")


@cache
def assumptions() -> dict[str, Any]:
    return load_table(resources.files("tunesmith.plan").joinpath("memory.yaml").read_text("utf-8"))


@dataclass(frozen=True)
class Setup:
    """How the run trains (resolved): what the estimate depends on besides the model's shapes."""

    method: str  # sft | cpt | dpo
    adapter: str  # lora | dora | qlora | prompt | prefix | ia3 | none
    weights: str  # storage of the base weights: fp32 | bf16 | fp16 | int8 | nf4
    mixed: bool  # autocast to a 16-bit compute dtype around fp32 weights
    optimizer: str
    gradient_checkpointing: bool
    micro_batch: int
    seq_len: int  # the longest batch's length (tokens)
    mask: bool  # an attention mask is materialised (padding or packing)
    lora_r: int | None
    lora_dropout: float | None
    num_virtual_tokens: int
    device: str  # gpu | cpu
    accumulate: bool = False  # gradient_accumulation_steps > 1: gradients live through the next forward
    gpus: int = 1
    sharding: str = "none"
    fused_loss: bool = False  # train's chunked LM head + loss (plan/speedups.py)
    frozen_bf16: bool = False  # LoRA's frozen base linear weights stored in bf16 (plan/speedups.py)

    @property
    def spec(self) -> AdapterSpec:
        """The adapter's row of ``config/adapters.yaml``."""
        return adapter_spec(self.adapter)


@dataclass(frozen=True)
class Component:
    name: str
    bytes: float
    note: str = ""
    sharded: bool = False  # divided across devices under this sharding


@dataclass
class MemoryEstimate:
    components: list[Component]
    peak_bytes: float
    by_sharding: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "peak_gib": round(self.peak_bytes / GIB, 3),
            "components_gib": {c.name: round(c.bytes / GIB, 4) for c in self.components},
            "component_notes": {c.name: c.note for c in self.components if c.note},
            "per_device_gib_by_sharding": {k: round(v / GIB, 3) for k, v in self.by_sharding.items()},
            "notes": self.notes,
        }


def _bytes(dtype: str) -> float:
    return float(assumptions()["bytes"][dtype])


def base_weights(shape: ModelShape, setup: Setup) -> Component:
    """The base model's parameters as stored during training."""
    if setup.weights in ("nf4", "int8"):
        quant = shape.block_linear_params
        rest = shape.total_params - quant
        scales = 4 * shape.layers * sum(m.out_features for m in shape.linear) if setup.weights == "int8" else 0
        # bitsandbytes quantises the decoder layers' linear weights; PEFT's prepare_model_for_kbit_training
        # casts every other parameter (embeddings, lm_head, norms, biases) to fp32
        total = quant * _bytes(setup.weights) + scales + rest * _bytes("fp32")
        note = f"{quant:,} linear weights in {setup.weights}, {rest:,} others in fp32"
        return Component("weights", total, note, sharded=True)
    if setup.frozen_bf16 and setup.weights == "fp32":
        linear = shape.layers * sum(m.params for m in shape.linear) + shape.lm_head_params  # a tied head stays fp32
        rest = shape.total_params - linear
        return Component("weights", linear * _bytes("bf16") + rest * _bytes("fp32"),
                         f"{linear:,} frozen linear weights in bf16 (train's bf16_frozen_weights), {rest:,} in fp32",
                         sharded=True)
    return Component("weights", shape.total_params * _bytes(setup.weights), f"{shape.total_params:,} x {setup.weights}",
                     sharded=True)


def optimizer_state(shape: ModelShape, train: Trainable, setup: Setup) -> tuple[Component, list[str]]:
    table = assumptions()["optimizers"]
    spec = table.get(setup.optimizer)
    if spec is None:
        raise PlanError(f"optimizer: {setup.optimizer!r} has no known state size (plan/memory.yaml knows {', '.join(table)})")
    notes = [f"optimizer {setup.optimizer}: paged state spills to CPU RAM under memory pressure"] if spec.get("paged") else []
    if spec.get("factored"):
        if setup.spec.full:
            per_matrix = shape.layers * sum(m.in_features + m.out_features for m in shape.linear)
            state = 4 * (per_matrix + shape.vocab + shape.hidden)
        else:
            state = 4 * train.trainable  # adapter matrices are small: bound by one value per parameter
        return Component("optimizer", state, spec["note"], sharded=True), notes
    per = spec["per_param"] * _param_bytes(setup) if "per_param" in spec else spec["bytes"]
    return Component("optimizer", train.trainable * per, f"{train.trainable:,} x {per:g} B ({spec['note']})",
                     sharded=True), notes


def _param_bytes(setup: Setup) -> float:
    """Bytes of a trainable parameter: adapters are fp32 (PEFT upcasts them); full fine-tuning trains the stored dtype."""
    if setup.spec.full:
        return _bytes(setup.weights)
    return _bytes("fp32")


def activations(shape: ModelShape, train: Trainable, setup: Setup) -> list[Component]:
    """What the forward pass keeps for backward on the longest batch: layer activations, the
    16-bit weight copies autocast saves, and the vocabulary-sized loss tensors."""
    spec = method_spec(setup.method)
    seqs = setup.micro_batch * (2 if spec.rows == "preference" else 1)  # pairs: chosen and rejected in one batch
    tokens = seqs * (setup.seq_len + (setup.num_virtual_tokens if setup.spec.virtual_tokens == "prompt" else 0))
    per_layer = layer_bytes_per_token(shape, train, setup)
    rd = residual_bytes(setup)
    if setup.gradient_checkpointing:
        kept = tokens * (shape.layers * shape.hidden * rd + per_layer)
        note = f"{tokens:,} tokens x ({shape.layers} layer inputs + one recomputed layer of {per_layer / 1024:.1f} KiB)"
    else:
        kept = tokens * shape.layers * per_layer
        note = f"{tokens:,} tokens x {shape.layers} layers x {per_layer / 1024:.1f} KiB"
    kept += tokens * (shape.hidden * rd + 4) * (2 if setup.spec.full else 1)  # final norm (+ lm_head input)
    out = [Component("activations", kept, note)]
    if setup.mixed:
        layers = 1 if setup.gradient_checkpointing else shape.layers
        block = 0 if setup.weights in ("nf4", "int8") or setup.frozen_bf16 else \
            layers * sum(m.in_features * m.out_features for m in shape.linear)
        head = 0 if setup.frozen_bf16 and not shape.tied else shape.vocab * shape.hidden  # a bf16 head needs no copy
        out.append(Component("weight_copies", 2 * (block + head),
                             "16-bit copies of the matmul weights autocast keeps for backward"))
    out.append(_logits(shape, setup, tokens, spec))
    return out


def _logits(shape: ModelShape, setup: Setup, tokens: int, spec: Any) -> Component:
    """The vocabulary-sized loss tensors: the whole batch's on the plain path; with train's fused loss one
    chunk of logits (16-bit matmul output + its fp32 copy) plus the hidden-state gradient it keeps (and
    the head's fp32 gradient when the head trains)."""
    if setup.fused_loss:
        from tunesmith.models.lmhead import FUSED_LOSS_CHUNK

        chunk = min(tokens, FUSED_LOSS_CHUNK)
        per = 4 + (2 if setup.mixed else 0)
        head = shape.vocab * shape.hidden * 4 if setup.spec.full else 0
        kept = chunk * shape.vocab * per + tokens * shape.hidden * residual_bytes(setup) + head
        return Component("logits", kept, f"fused loss: one {chunk:,}-token chunk x {shape.vocab:,} x {per} B + "
                         f"{tokens:,} hidden-state gradients")
    copies = assumptions()["logits_copies"]["reward" if spec.model == "reward" else spec.rows]
    return Component("logits", tokens * shape.vocab * 4 * copies, f"{tokens:,} tokens x {shape.vocab:,} x {copies} fp32")


def estimate(shape: ModelShape, train: Trainable, setup: Setup) -> MemoryEstimate:
    """Peak bytes per device: weights + optimizer + gradients + max(what the forward keeps, the optimizer step)."""
    weights = base_weights(shape, setup)
    pbytes = _param_bytes(setup)
    parts = [weights]
    if not setup.spec.full:
        parts.append(Component("adapter", train.trainable * pbytes, f"{train.trainable:,} trainable x {pbytes:g} B",
                               sharded=True))
    parts.append(Component("gradients", train.trainable * pbytes, f"{train.trainable:,} x {pbytes:g} B", sharded=True))
    optim, notes = optimizer_state(shape, train, setup)
    parts.append(optim)
    spec = method_spec(setup.method)
    if spec.reference and setup.spec.full:
        parts.append(Component("reference", weights.bytes, f"a frozen copy of the model ({setup.method}, full "
                               "fine-tuning)", sharded=True))
    elif spec.reference:
        notes.append(f"{setup.method} reference = the base with the adapter disabled: no second copy")
    if spec.teacher:
        parts.append(Component("teacher", weights.bytes, "the teacher model, frozen (assumed the student's size: "
                               "it shares the student's tokenizer)", sharded=True))
    parts += activations(shape, train, setup)
    parts.append(Component("runtime", assumptions()["runtime_gib"][setup.device] * GIB,
                           "CUDA context" if setup.device == "gpu" else "Python + torch + libraries (measured)"))
    temp = _step_temporary(shape, train, setup)
    by_sharding = {s: _peak(parts, temp, s, setup) for s in SHARDING}
    sharding = "zero3" if setup.sharding == "fsdp" else setup.sharding
    shown = [_shard(c, sharding, setup.gpus) for c in parts]
    return MemoryEstimate(shown, by_sharding[sharding], by_sharding if setup.gpus > 1 else {}, notes)


def _step_temporary(shape: ModelShape, train: Trainable, setup: Setup) -> float:
    kind = assumptions()["optimizer_step_temporary"][setup.device]
    if not setup.optimizer.startswith("adamw_torch") and setup.optimizer != "adamw":
        return 0.0
    size = train.trainable if kind == "all_params" or not setup.spec.full else shape.largest_tensor()
    return size * _param_bytes(setup)


_FORWARD = ("activations", "weight_copies", "logits")
_SHARDED_BY = {"none": set(), "zero1": {"optimizer"}, "zero2": {"optimizer", "gradients"},
               "zero3": {"optimizer", "gradients", "weights", "adapter", "reference", "weight_copies"}}
# zero3 / FSDP gather one layer at a time and cast it there: the 16-bit copies are sharded too


def _shard(c: Component, sharding: str, gpus: int) -> Component:
    if gpus > 1 and c.name in _SHARDED_BY[sharding]:
        return Component(c.name, c.bytes / gpus, f"{c.note} / {gpus} devices ({sharding})", True)
    return c


def _peak(parts: list[Component], step_temporary: float, sharding: str, setup: Setup) -> float:
    """Weights and optimizer state, plus the larger of: what the forward keeps (with the gradients when
    they accumulate over micro-batches) and the optimizer step (gradients + its temporaries)."""
    gpus = setup.gpus
    sized = {c.name: _shard(c, sharding, gpus).bytes for c in parts}
    forward = sum(sized.get(k, 0.0) for k in _FORWARD)
    steady = sum(v for k, v in sized.items() if k not in (*_FORWARD, "gradients"))
    grads = sized["gradients"]
    temp = step_temporary / (gpus if sharding != "none" and gpus > 1 else 1)
    if setup.accumulate:
        return steady + grads + max(forward, temp)
    return steady + max(forward, grads + temp)
