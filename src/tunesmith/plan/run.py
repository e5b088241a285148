"""``plan.run(config)``: memory per device, time and cost of a run before any weight is loaded."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from tunesmith.config.methods import method_spec
from tunesmith.config import Config
from tunesmith.config.adapters import adapter_spec, gradient_checkpointing
from tunesmith.plan.adapters import AdapterSettings, Trainable, trainable
from tunesmith.plan import speedups
from tunesmith.plan.device import Device, local_device, named_gpu
from tunesmith.plan.memory import GIB, MemoryEstimate, Setup, assumptions, estimate
from tunesmith.plan.shapes import ModelShape, PlanError, model_shape
from tunesmith.plan.timing import TimeEstimate, estimate_time
from tunesmith.plan.tokens import DataStats, data_stats

WEIGHT_DTYPES = ("fp32", "bf16", "fp16", "int8", "nf4")


@dataclass(frozen=True)
class PlanOptions:
    """What the command line can set on top of the config's ``hardware`` section."""

    gpu: str | None = None
    gpus: int | None = None
    sharding: str | None = None
    price_per_hour: float | None = None
    mfu: float | None = None
    weights: str | None = None  # storage of the base weights; default: as `train` loads them


@dataclass
class PlanResult:
    name: str
    model: ModelShape
    device: Device
    setup: Setup
    trainable: Trainable
    memory: MemoryEstimate
    data: DataStats
    time: TimeEstimate | None
    fits: bool | None
    defaults: dict[str, Any]
    recommendation: Any = None
    notes: list[str] = field(default_factory=list)

    @property
    def headroom_gib(self) -> float | None:
        if self.device.memory_gib is None:
            return None
        return self.device.memory_gib - self.memory.peak_bytes / GIB

    def as_dict(self) -> dict[str, Any]:
        m = self.model
        return {
            "config": self.name,
            "model": {"source": m.source, "model_type": m.model_type, "params": m.total_params, "layers": m.layers,
                      "hidden": m.hidden, "vocab": m.vocab},
            "device": {**self.device.as_dict(), "count": self.setup.gpus, "sharding": self.setup.sharding},
            "setup": {k: getattr(self.setup, k) for k in self.setup.__dataclass_fields__},
            "trainable_params": self.trainable.trainable,
            "memory": self.memory.as_dict(),
            "fits": self.fits,
            "headroom_gib": None if self.headroom_gib is None else round(self.headroom_gib, 3),
            "data": self.data.as_dict(),
            "time": self.time.as_dict() if self.time else None,
            "defaults": self.defaults,
            "recommendation": self.recommendation.as_dict() if self.recommendation else None,
            "assumptions": {k: assumptions()[k] for k in ("bytes", "runtime_gib", "mfu", "logits_copies", "chars_per_token")},
            "notes": self.notes,
        }


def run(config: Config, options: PlanOptions | None = None, redirects: dict[str, str] | None = None,
        name: str = "<config>", data: DataStats | None = None) -> PlanResult:
    """Plan ``config``: read the model's config.json and the data, never the weights.

    ``data``: the training data's statistics when the caller has already tokenized it (``train``:
    ``tokens.from_tokenized`` of its own tokenization), so the data is not read again."""
    options = options or PlanOptions()
    device = resolve_device(config, options)
    redirects = redirects or {}
    shape = model_shape(config.base_model, redirects)
    from tunesmith.plan.recommend import recommend
    from tunesmith.config.defaults import resolve  # the values train would use (imports the train stage)

    stats = data or data_stats(config, redirects.get(config.base_model, config.base_model),
                               assumptions()["chars_per_token"])
    resolved = resolve(config, stats.rows)
    setup = setup_for(config, device, stats, resolved.values, options, shape=shape)
    train = trainable(shape, adapter_settings(config, resolved.values))
    memory = estimate(shape, train, setup)
    result = PlanResult(name, shape, device, setup, train, memory, stats, None, _fits(memory, device),
                        {k: {"value": resolved.values[k], "source": resolved.sources[k]} for k in resolved.values})
    result.time = _time(config, shape, setup, stats, device, resolved.values, options)
    result.notes = _notes(config, setup, stats, device, memory)
    result.recommendation = recommend(config, shape, stats, device, options)
    return result


def resolve_device(config: Config, options: PlanOptions) -> Device:
    hw = config.hardware
    price = options.price_per_hour if options.price_per_hour is not None else hw.price_per_hour
    if options.gpu:
        return named_gpu(options.gpu, "--gpu")
    if hw.gpu:
        return named_gpu(hw.gpu, "hardware.gpu")
    if price is not None:
        raise PlanError("--price-per-hour: a price needs a device (--gpu NAME or hardware.gpu in the config)")
    return local_device()


def adapter_settings(config: Config, resolved: dict[str, Any], adapter: str | None = None) -> AdapterSettings:
    return AdapterSettings(adapter or config.adapter, resolved.get("lora_r", config.lora_r or 16),
                           config.lora_target_modules, config.modules_to_save, config.num_virtual_tokens)


def setup_for(config: Config, device: Device, stats: DataStats, resolved: dict[str, Any], options: PlanOptions,
              adapter: str | None = None, checkpointing: bool | None = None, shape: ModelShape | None = None) -> Setup:
    """The run as `train` would do it on ``device`` (see train/run.py, train/model.py, models/precision.py,
    train/speed.py: with ``shape``, the speed-ups train would choose for that model)."""
    adapter = adapter or config.adapter
    weights = options.weights or adapter_spec(adapter).base  # train/model.py loads fp32 / nf4
    if weights not in WEIGHT_DTYPES:
        raise PlanError(f"--weights: must be one of {', '.join(WEIGHT_DTYPES)} (got {weights!r})")
    if checkpointing is None:  # as train/run.py: on for QLoRA unless set
        checkpointing = gradient_checkpointing(config, adapter)
    hw, dist = config.hardware, config.distributed  # the schema keeps the two consistent
    gpus = options.gpus or (dist.world_size if dist else hw.gpus)
    mixed = _mixed(config, device, weights)
    fast = speedups.expected(config, shape, device, adapter, gpus, mixed) if shape else speedups.Speedups()
    return Setup(
        method=config.method, adapter=adapter, weights=weights, mixed=mixed,
        optimizer=config.optimizer, gradient_checkpointing=checkpointing, micro_batch=config.micro_batch_size,
        seq_len=max(1, stats.longest), mask=stats.padded and not fast.padding_free, lora_r=resolved.get("lora_r"),
        lora_dropout=resolved.get("lora_dropout"), num_virtual_tokens=config.num_virtual_tokens,
        device=device.kind, accumulate=config.gradient_accumulation_steps > 1, gpus=gpus,
        sharding=options.sharding or (dist.plan_sharding if dist else hw.sharding),
        fused_loss=fast.fused_loss, frozen_bf16=fast.frozen_bf16 and weights == "fp32",
    )


def _mixed(config: Config, device: Device, weights: str) -> bool:
    """Autocast to 16 bits around fp32 weights: what `bf16: auto/true` does on this device."""
    if weights != "fp32" and weights not in ("nf4", "int8"):
        return False  # 16-bit weights compute in their own dtype
    if config.bf16 is False:
        return False
    if device.kind == "gpu":
        return True  # bf16, or fp16 with loss scaling where the GPU lacks bf16
    from tunesmith.models.precision import choose

    return choose(config.bf16).bf16


def _fits(memory: MemoryEstimate, device: Device) -> bool | None:
    return None if device.memory_gib is None else memory.peak_bytes / GIB <= device.memory_gib


def _time(config: Config, shape: ModelShape, setup: Setup, stats: DataStats, device: Device,
          resolved: dict[str, Any], options: PlanOptions) -> TimeEstimate | None:
    if device.peak_tflops is None:
        return None
    if config.max_steps > 0:
        per_row = stats.slots_per_batch_row  # a packed bin / text window, not a sample
        tokens = int(config.max_steps * config.micro_batch_size * config.gradient_accumulation_steps * setup.gpus * per_row)
    else:
        tokens = int(stats.slots * resolved["num_epochs"])
    mfu_table = assumptions()["mfu"]
    mfu = options.mfu or mfu_table.get(setup.adapter, mfu_table["default"])
    if not 0 < mfu <= 1:
        raise PlanError(f"--mfu: must be in (0, 1] (got {mfu})")
    spec = method_spec(setup.method)
    context = stats.slots / max(1, stats.rows) / (2 if spec.rows == "preference" else 1)
    price = options.price_per_hour if options.price_per_hour is not None else config.hardware.price_per_hour
    return estimate_time(shape, tokens, context / 2, setup.spec.full, setup.gradient_checkpointing,
                         spec.reference or spec.teacher, device.peak_tflops, setup.gpus, mfu, price)


def _notes(config: Config, setup: Setup, stats: DataStats, device: Device, memory: MemoryEstimate) -> list[str]:
    notes = list(memory.notes)
    if setup.weights == "fp32" and not setup.spec.full and not setup.frozen_bf16:
        notes.append("train loads the base in fp32 (train/model.py); --weights bf16 shows a 16-bit base")
    if device.kind == "gpu" and not device.bf16 and config.bf16 is not False:
        notes.append(f"{device.name} has no bf16: training would use fp16 with loss scaling")
    if device.peak_tflops is None:
        notes.append("no time estimate: the device has no peak throughput in config/gpus.yaml (pass --gpu NAME)")
    if stats.source != "tokenized":
        notes.append(f"tokens {stats.source}")
    return notes


def check_fit(config: Config, say: Callable[[str], None] = print, data: DataStats | None = None) -> PlanResult | None:
    """`train`'s check before it loads the model: the plan's estimate against the configured device
    (``hardware``), this machine's GPU, or its available RAM. Raises PlanError when it would not fit
    (``hardware.memory_check: error``). ``data``: statistics of the data train has just tokenized
    (``tokens.from_tokenized``); without it the data is read and tokenized here (into the tokenize cache)."""
    if config.hardware.memory_check == "off":
        return None
    try:
        result = run(config, data=data)
    except PlanError as exc:  # an architecture without known shapes must not block training
        say(f"memory check skipped: {exc}")
        return None
    peak = result.memory.peak_bytes / GIB
    if result.device.memory_gib is None:
        say(f"memory estimate: {peak:.2f} GiB per device (no device size to check against)")
        return result
    say(f"memory estimate: {peak:.2f} GiB per device of {result.device.memory_gib:.1f} GiB ({result.device.name})")
    if not result.fits:
        message = _no_fit_message(config, result)
        if config.hardware.memory_check == "error":
            raise PlanError(message)
        say(f"warning: {message}")
    return result


def _no_fit_message(config: Config, result: PlanResult) -> str:
    from tunesmith.plan.recommend import fitting_alternative

    memory, device = result.memory, result.device
    key = "hardware.gpu" if config.hardware.gpu else "hardware (none set: this machine)"
    parts = ", ".join(f"{c.name} {c.bytes / GIB:.2f}" for c in memory.components if c.bytes >= 0.005 * GIB)
    alt = fitting_alternative(config, result.model, result.data, device)
    return (f"{key}: the run would not fit: ~{memory.peak_bytes / GIB:.2f} GiB per device > {device.memory_gib:.1f} GiB "
            f"on {device.name} (GiB: {parts}); {alt}; hardware.memory_check: warn trains anyway")
