"""Inside one process of a multi-process run: who am I (rank), and the few points where ranks meet.

The processes are started by ``torch.distributed.run`` (see ``launch.py``), which sets ``RANK``,
``LOCAL_RANK`` and ``WORLD_SIZE``; accelerate's ``PartialState`` joins the process group that
transformers' Trainer then uses. Rules every rank follows (``train/run.py``):

* only rank 0 writes the run directory (run.json, config.yaml, metrics, rejected rows, markers,
  ``model/``); the Trainer writes each rank's RNG state into the checkpoint;
* rank 0 reads, audits and tokenizes first; the other ranks wait, then read its cache;
* a checkpoint is marked complete only when every rank has written its part (``barrier``);
* the final weights are gathered from every rank (FSDP / ZeRO-3) before rank 0 saves them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from tunesmith.config import Config
from tunesmith.errors import ConfigError


@dataclass(frozen=True)
class World:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    backend: str = "none"  # ddp | fsdp | deepspeed, or none (one process)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1 or self.backend != "none"

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    @contextlib.contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block first; the other ranks enter it once rank 0 is through."""
        if not self.is_main:
            self.barrier()
        yield
        if self.is_main:
            self.barrier()


def launched() -> bool:
    """This process was started by torch.distributed.run (or another launcher setting the same variables)."""
    return "WORLD_SIZE" in os.environ and "LOCAL_RANK" in os.environ


def join(config: Config) -> World:
    """The world of this process: one process unless launched; joins the process group when launched."""
    if not launched():
        if config.distributed is not None and config.distributed.launches:
            dist = config.distributed
            raise ConfigError(f"distributed: {dist.backend} with {dist.world_size} process(es) runs through "
                              "torch.distributed.run: tunesmith train CONFIG --nproc N starts it (train.run in one "
                              "process would silently train without it)")
        return World()
    world = World(int(os.environ.get("RANK", "0")), int(os.environ["LOCAL_RANK"]), int(os.environ["WORLD_SIZE"]),
                  config.distributed.backend if config.distributed else "ddp")
    dist = config.distributed
    if dist is not None and dist.world_size != world.world_size:
        raise ConfigError(f"distributed: the launcher started {world.world_size} processes, but the config says "
                          f"{dist.processes} per node x {dist.nodes} nodes = {dist.world_size}; launch with "
                          "tunesmith train CONFIG --nproc N (it sets both), or fix distributed.processes / nodes")
    timeout = timedelta(seconds=dist.timeout_s if dist else 1800)
    if device(config) == "cpu":
        from accelerate import PartialState

        PartialState(cpu=True, backend="gloo", timeout=timeout)  # the state TrainingArguments(use_cpu) reuses
        return world
    # CUDA: the process group only; accelerate (DDP, FSDP2) and DeepSpeed find it initialized and use it,
    # and create their own state as the Trainer configures them. NCCL for CUDA tensors, gloo for CPU ones
    # (FSDP2 offload, a full state dict gathered on the CPU), as accelerate itself does for FSDP.
    import torch
    import torch.distributed as tdist

    torch.cuda.set_device(world.local_rank)
    backend = dist.comm_backend if dist is not None and dist.comm_backend != "auto" else "nccl"
    if not tdist.is_initialized():
        tdist.init_process_group(backend="cuda:nccl,cpu:gloo" if backend == "nccl" else backend, timeout=timeout)
    return world


def device(config: Config) -> str:
    """cuda or cpu: what the processes train on (``distributed.device``; auto = CUDA when present)."""
    wanted = config.distributed.device if config.distributed else "auto"
    if wanted != "auto":
        return wanted
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def leave() -> None:
    """Leave the process group at the end of a launched process (no dangling-group warning)."""
    if not launched():
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def trainer_args(config: Config, world: World) -> dict[str, Any]:
    """TrainingArguments for the engine: ``fsdp`` + ``fsdp_config`` (FSDP2), ``deepspeed`` (a dict
    built from the section, or the user's JSON), DDP options, timeouts."""
    if not world.distributed:
        return {}
    dist = config.distributed
    out: dict[str, Any] = {"ddp_timeout": dist.timeout_s if dist else 1800}
    if device(config) == "cpu":
        out["use_cpu"] = True
        out["ddp_backend"] = "gloo"
    elif dist is not None and dist.comm_backend != "auto":
        out["ddp_backend"] = dist.comm_backend
    if dist is None:
        return out
    if dist.find_unused_parameters is not None:
        out["ddp_find_unused_parameters"] = dist.find_unused_parameters
    if dist.backend == "fsdp":
        out["fsdp"] = True
        out["fsdp_config"] = {"version": 2, "reshard_after_forward": dist.fsdp_sharding == "full_shard",
                              "cpu_offload": dist.offload == "all", "state_dict_type": "FULL_STATE_DICT",
                              **dist.fsdp_options}
    elif dist.backend == "deepspeed":
        out["deepspeed"] = dist.deepspeed_config or deepspeed_config(dist)
    return out


def deepspeed_config(dist: Any) -> dict[str, Any]:
    """The DeepSpeed JSON for ``zero_stage`` + ``offload`` ("auto" values are filled in by transformers)."""
    zero: dict[str, Any] = {"stage": dist.stage, "overlap_comm": True, "contiguous_gradients": True}
    if dist.offload in ("optimizer", "all"):
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if dist.offload == "all":
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    if dist.stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True  # the final save holds every weight
    return {"train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto",
            "train_batch_size": "auto", "gradient_clipping": "auto", "bf16": {"enabled": "auto"},
            "fp16": {"enabled": "auto"}, "zero_optimization": zero}
