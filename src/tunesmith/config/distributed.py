"""The ``distributed:`` section: how many processes train one run, and which engine shards it.

tunesmith does not implement data parallelism: ``torch.distributed.run`` starts the processes
and transformers' Trainer (through accelerate) runs DDP, FSDP2 or DeepSpeed ZeRO. This section
says which, validated before anything is launched. Other tools' keys (``deepspeed:
ds_z3_config.json``, ``fsdp: full_shard auto_wrap``, ``fsdp_config``, ``ddp_timeout``, ...) are
translated into it by the key tables in ``config/foreign/``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from tunesmith.config.strict import StrictModel
from tunesmith.errors import did_you_mean

FsdpSharding = Literal["full_shard", "shard_grad_op"]
FSDP_TOKENS = ("full_shard", "shard_grad_op")
_FSDP1_ONLY = ("hybrid_shard", "hybrid_shard_zero2", "no_shard")
# transformers' fsdp_config keys tunesmith passes on (written with or without the ``fsdp_`` prefix)
FSDP_OPTIONS = ("min_num_params", "transformer_layer_cls_to_wrap", "backward_prefetch", "forward_prefetch",
                "limit_all_gathers", "use_orig_params", "sync_module_states", "cpu_ram_efficient_loading",
                "activation_checkpointing", "auto_wrap_policy", "reshard_after_forward", "state_dict_type",
                "offload_params", "cpu_offload", "version")
# plan/memory.py's names for what is split across devices (hardware.sharding)
_PLAN_SHARDING = {"full_shard": "fsdp", "shard_grad_op": "zero2"}
_DS_NAME = re.compile(r"ds_z(\d)(_offload)?(_config)?\.json$")


class DistributedConfig(StrictModel):
    """Several processes (devices) for one run, launched with ``tunesmith train CONFIG --nproc N``."""

    backend: Literal["ddp", "fsdp", "deepspeed"] = Field(
        "ddp", description="ddp: every process holds the whole model; fsdp: FSDP2 shards it; deepspeed: ZeRO")
    processes: int = Field(1, gt=0, description="Processes per node (one per GPU; on CPU at most one per core)")
    nodes: int = Field(1, gt=0, description="Machines; each runs the printed launch command with its --node-rank")
    device: Literal["auto", "cuda", "cpu"] = Field("auto", description="auto: CUDA when present, else CPU")
    comm_backend: Literal["auto", "nccl", "gloo"] = Field(
        "auto", description="torch.distributed backend: auto = nccl on CUDA, gloo on CPU")
    zero_stage: Literal[0, 1, 2, 3] | None = Field(
        None, description="deepspeed: 1 optimizer state, 2 + gradients, 3 + weights sharded (default 2)")
    offload: Literal["none", "optimizer", "all"] = Field(
        "none", description="Move optimizer state (optimizer) or also weights (all) to CPU memory")
    fsdp_sharding: FsdpSharding = Field(
        "full_shard", description="fsdp: full_shard (weights too) or shard_grad_op (gradients + optimizer state)")
    fsdp_options: dict[str, Any] = Field(default_factory=dict, description="fsdp: more transformers fsdp_config keys")
    deepspeed_config: str | None = Field(None, description="deepspeed: a DeepSpeed JSON file used as written")
    timeout_s: int = Field(1800, gt=0, description="Seconds a collective (and rank 0's tokenization) may take")
    find_unused_parameters: bool | None = Field(None, description="ddp: DDP's find_unused_parameters")
    master_port: int = Field(29500, gt=0, lt=65536, description="Rendezvous port (multi-node)")

    @model_validator(mode="before")
    @classmethod
    def _peer_values(cls, data: Any) -> Any:
        """transformers' ``fsdp: "full_shard offload auto_wrap"`` strings and lists, ``fsdp_config``
        keys with their ``fsdp_`` prefix, and a DeepSpeed JSON's stage and offload."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        sharding = data.get("fsdp_sharding")
        if isinstance(sharding, (str, list)):
            data.update(_fsdp_tokens(sharding))
        options = data.get("fsdp_options")
        if isinstance(options, dict):
            data["fsdp_options"] = _fsdp_options(options, data)
        if isinstance(data.get("deepspeed_config"), str):
            data = _deepspeed_file(data)
        return data

    @model_validator(mode="after")
    def _consistent(self) -> "DistributedConfig":
        if self.zero_stage is not None and self.backend != "deepspeed":
            raise ValueError(f"zero_stage: a ZeRO stage needs backend: deepspeed (backend is {self.backend}; "
                             "fsdp shards with fsdp_sharding)")
        if self.deepspeed_config is not None and self.backend != "deepspeed":
            raise ValueError(f"deepspeed_config: needs backend: deepspeed (backend is {self.backend})")
        if self.offload != "none" and self.backend == "ddp":
            raise ValueError("offload: DDP keeps everything on the device; offloading needs backend fsdp or deepspeed")
        if self.offload == "all" and self.backend == "deepspeed" and self.stage < 3:
            raise ValueError(f"offload: all (weights too) needs zero_stage: 3 (got {self.stage})")
        if self.offload == "optimizer" and self.backend == "fsdp":
            raise ValueError("offload: FSDP2 offloads weights, gradients and optimizer state together: use offload: all")
        if self.fsdp_options and self.backend != "fsdp":
            raise ValueError(f"fsdp_options: only for backend: fsdp (backend is {self.backend})")
        if self.comm_backend == "nccl" and self.device == "cpu":
            raise ValueError("comm_backend: nccl runs between CUDA devices only; on device: cpu use gloo")
        return self

    @property
    def world_size(self) -> int:
        return self.processes * self.nodes

    @property
    def launches(self) -> bool:
        """Needs torch.distributed.run: several processes, or an engine (FSDP2, DeepSpeed) even on one."""
        return self.world_size > 1 or self.backend != "ddp"

    @property
    def stage(self) -> int:
        """The ZeRO stage in effect (deepspeed; 2 unless set)."""
        return 2 if self.zero_stage is None else self.zero_stage

    @property
    def plan_sharding(self) -> str:
        """The same choice in ``tunesmith plan``'s terms (hardware.sharding: none|zero1|zero2|zero3|fsdp)."""
        if self.backend == "ddp":
            return "none"
        if self.backend == "deepspeed":
            return "none" if self.stage == 0 else f"zero{self.stage}"
        return _PLAN_SHARDING[self.fsdp_sharding]


def _fsdp_tokens(value: str | list[Any]) -> dict[str, Any]:
    """``"full_shard offload auto_wrap"`` (transformers' ``fsdp`` string) or a list of the same words."""
    words = value.split() if isinstance(value, str) else [str(v) for v in value]
    out: dict[str, Any] = {}
    for word in words:
        if word in FSDP_TOKENS:
            if "fsdp_sharding" in out:
                raise ValueError(f"fsdp_sharding: one sharding strategy only (got {out['fsdp_sharding']} and {word})")
            out["fsdp_sharding"] = word
        elif word in _FSDP1_ONLY:
            raise ValueError(f"fsdp_sharding: {word} exists only in FSDP1, which torch deprecated; tunesmith runs "
                             "FSDP2: full_shard (weights, gradients, optimizer state) or shard_grad_op (no weights)")
        elif word == "offload":
            out["offload"] = "all"
        elif word != "auto_wrap":  # tunesmith always wraps each decoder layer
            raise ValueError(f"fsdp_sharding: unknown FSDP option {word!r} (one of {', '.join(FSDP_TOKENS)}, "
                             "offload, auto_wrap)")
    out.setdefault("fsdp_sharding", "full_shard")
    return out


def _fsdp_options(options: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in options.items():
        name = str(key).removeprefix("fsdp_")
        if name not in FSDP_OPTIONS:
            tip = did_you_mean(name, FSDP_OPTIONS)
            raise ValueError(f"fsdp_options: unknown FSDP option {key!r}{tip}; known: {', '.join(FSDP_OPTIONS)}")
        if name == "version" and int(value) != 2:
            raise ValueError(f"fsdp_options: version {value}: tunesmith runs FSDP2 (fully_shard) only; FSDP1 is "
                             "deprecated in torch (remove the key or set 2)")
        if name in ("offload_params", "cpu_offload"):
            if value:
                data["offload"] = "all"
            continue
        if name == "state_dict_type" and str(value).upper() not in ("FULL_STATE_DICT", "SHARDED_STATE_DICT"):
            raise ValueError(f"fsdp_options: state_dict_type {value!r}: FULL_STATE_DICT or SHARDED_STATE_DICT")
        if name == "reshard_after_forward" and isinstance(value, bool) and "fsdp_sharding" not in data:
            data["fsdp_sharding"] = "full_shard" if value else "shard_grad_op"
            continue
        out[name] = value
    return out


def _deepspeed_file(data: dict[str, Any]) -> dict[str, Any]:
    """Read the ZeRO stage and offload from the DeepSpeed JSON (or, for the file names peers ship in
    their examples, ds_z3_offload_config.json, from the name) so plan and checks know them."""
    path = Path(data["deepspeed_config"]).expanduser()
    if path.is_file():
        try:
            spec = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"deepspeed_config: {path} is not a JSON file ({exc})") from None
        zero = spec.get("zero_optimization") or {} if isinstance(spec, dict) else {}
        stage = int(zero.get("stage", 0))
        offload = "all" if _offloads(zero, "offload_param") else "optimizer" if _offloads(zero, "offload_optimizer") else "none"
    else:
        match = _DS_NAME.search(path.name)
        if match is None:
            raise ValueError(f"deepspeed_config: file not found: {path}")
        stage, offload = int(match.group(1)), "all" if match.group(2) and match.group(1) == "3" else (
            "optimizer" if match.group(2) else "none")
        data = {**data, "deepspeed_config": None}  # a peer's example name: tunesmith writes the equivalent itself
    for key, value in (("zero_stage", stage), ("offload", offload)):
        if data.get(key) is not None and data[key] != value and not (key == "offload" and data[key] == "none"):
            raise ValueError(f"{key}: {data[key]} contradicts deepspeed_config {path.name} ({key} {value})")
        data = {**data, key: value}
    data.setdefault("backend", "deepspeed")
    return data


def _offloads(zero: dict[str, Any], key: str) -> bool:
    device = (zero.get(key) or {}).get("device", "none") if isinstance(zero.get(key), dict) else "none"
    return str(device).lower() in ("cpu", "nvme")
