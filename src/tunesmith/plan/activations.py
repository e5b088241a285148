"""Bytes one decoder layer keeps for the backward pass, per token.

The accounting follows what autograd saves in a Llama-layout layer (RMSNorm -> q/k/v -> RoPE
-> SDPA -> o -> RMSNorm -> gate/up -> SiLU * up -> down), given which weights train, which
modules carry an adapter, and the precision (listed with saved-tensor hooks on the real
models; ``tests/test_plan_activations.py`` checks the totals against those hooks):

* an RMSNorm keeps its input and 1/rms; its normalised input too when its weight trains;
* a linear layer keeps its input only when its weight trains; a LoRA module keeps its own
  input (with ``lora_dropout > 0``: the dropout's output and its mask, a float tensor on CPU,
  a bool one on GPU) and the rank-r intermediate; IA3 keeps the tensor it scales; DoRA the
  base and LoRA outputs for the magnitude;
* under autocast each matmul that reads an fp32 tensor saves its own 16-bit copy of it;
* SDPA keeps q, k, v (repeated to every head when a mask is passed and heads are grouped),
  its output (which o_proj reads) and the log-sum-exp; the MLP keeps the gate output, the
  activation and the up projection (and their product when down_proj needs it);
* 4-bit (bitsandbytes) layers keep no input and return their input's dtype.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tunesmith.plan.adapters import Trainable
from tunesmith.plan.shapes import Linear, ModelShape

if TYPE_CHECKING:
    from tunesmith.plan.memory import Setup


def layer_bytes_per_token(shape: ModelShape, train: Trainable, setup: Setup) -> float:
    """Bytes kept per token by one decoder layer during a training forward pass."""
    return _Layer(shape, train, setup).total()


def residual_bytes(setup: Setup) -> int:
    """The residual stream's dtype: fp32 unless the weights themselves are 16-bit."""
    return 2 if setup.weights in ("bf16", "fp16") else 4


class _Layer:
    def __init__(self, shape: ModelShape, train: Trainable, setup: Setup):
        self.s, self.setup = shape, setup
        self.spec = setup.spec
        self.full = self.spec.full
        self.lora = self.spec.low_rank
        self.quantized = setup.weights in ("nf4", "int8")
        self.autocast = setup.mixed
        self.dropout = self.lora and (setup.lora_dropout or 0) > 0
        adapted = {m.name for m in train.modules}
        self.adapted = adapted if self.lora else set()
        self.ia3 = adapted if self.spec.peft == "ia3" else set()
        self.rd = residual_bytes(setup)
        self.q = shape.heads * shape.head_dim
        self.kv = shape.kv_heads * shape.head_dim

    def _out_bytes(self, in_bytes: float) -> float:
        """A linear layer's output dtype: 4-bit layers return their input's dtype."""
        if self.quantized:
            return in_bytes
        return 2 if self.autocast else self.rd

    def _mask_bytes(self, in_bytes: float) -> float:
        return 1 if self.setup.device == "gpu" else in_bytes  # CPU dropout saves a float mask

    def _readers(self, modules: tuple[str, ...], size: int, in_bytes: float, kept_already: bool) -> float:
        """What the linear modules reading one tensor keep of it: shared, 16-bit copies, adapter paths."""
        linears = {m.name: m for m in self.s.linear}
        cast = 2 if self.autocast and in_bytes == 4 else 0
        kept, shared = 0.0, False
        for name in modules:
            if self.full and not self.quantized:
                kept, shared = (kept + size * cast, shared) if cast else (kept, True)
            if name in self.adapted:
                kept += self._lora(size, in_bytes, linears[name])
                shared = shared or (not self.dropout and not self.autocast and in_bytes == 4)
            if name in self.ia3 and name in self.s.ia3_feedforward:
                # PEFT scales the input in the base weight's dtype (fp32): a copy unless it is fp32 already
                kept, shared = (kept, True) if in_bytes == 4 else (kept + size * 4, shared)
            elif name in self.ia3:
                kept += linears[name].out_features * self._out_bytes(in_bytes)  # the scaled output
        return kept + (size * in_bytes if shared and not kept_already else 0.0)

    def _lora(self, size: int, in_bytes: float, module: Linear) -> float:
        """A LoRA module's own saved tensors. PEFT casts its input to the adapter's dtype (fp32) first."""
        kept = (self.setup.lora_r or 0) * (2 if self.autocast else 4)  # lora_A output, kept by lora_B
        if self.dropout:
            kept += size * self._mask_bytes(4)  # the mask of the dropout on the fp32 input
        if self.autocast:
            kept += size * 2  # lora_A's 16-bit copy of its input
        elif self.dropout or in_bytes != 4:
            kept += size * 4  # the dropout output / the fp32 copy lora_A reads
        if self.spec.dora:  # base and LoRA outputs, for the magnitude's gradient
            out = self._out_bytes(in_bytes)
            # without dropout PEFT reuses the base output minus the fp32 bias (an fp32 tensor under autocast)
            base = 4 if (module.bias and self.autocast and not self.dropout) else out
            kept += module.out_features * (base + out)
        return kept

    def total(self) -> float:
        s, groups = self.s, dict(self.s.inputs)
        h, rd = s.hidden, self.rd
        kept = 2 * (h * rd + 4)  # both norms: input and 1/rms
        if self.full:
            kept += 2 * h * rd  # normalised input, for the norm weight's gradient
        mo = self._out_bytes(rd)  # q/k/v and gate/up outputs
        ab = 2 if self.autocast else mo  # what SDPA saves
        kv = self.q if (self.setup.mask and s.kv_heads < s.heads) else self.kv
        virtual = self.spec.virtual_tokens
        attn_len = self.setup.seq_len + (self.setup.num_virtual_tokens if virtual != "none" else 0)
        prefix = attn_len / self.setup.seq_len if virtual == "prefix" else 1.0  # prefix keys/values
        kept += (2 * self.q + 2 * kv * prefix) * ab + s.heads * 4
        if self.setup.mask:
            kept += attn_len * ab  # the attention kernel's float copy of the mask, per query row
        kept += 3 * s.intermediate * mo
        kept += self._readers(groups["norm1"], h, rd, False)
        kept += self._readers(groups["attn"], self.q, ab, True)  # o_proj reads SDPA's kept output
        kept += self._readers(groups["norm2"], h, rd, False)
        kept += self._readers(groups["mlp"], s.intermediate, mo, False)
        return kept
