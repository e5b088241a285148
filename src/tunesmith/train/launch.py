"""Start a multi-process run through ``torch.distributed.run`` (torchrun), never a home-made pool.

``tunesmith train CONFIG --nproc N`` checks what can be checked before anything starts
(:func:`refusals`: processes vs devices or cores, NCCL without CUDA, DeepSpeed not installed),
prints the exact command (:func:`command`, what a SLURM or Kubernetes job runs on each node) and
runs it (:func:`run`). torchrun's agent stops every rank when one fails (``--max-restarts 0``), so
a crashed or killed rank never leaves the others hanging; the launcher then says which rank
failed and records the attempt as failed in run.json (a checkpoint is only ever resumed when
complete, see ``checkpoints.py``).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tunesmith.config import Config
from tunesmith.errors import TunesmithError
from tunesmith.train import world as worlds


class LaunchError(TunesmithError):
    """The distributed job could not start, or one of its processes failed (the whole job stopped)."""


@dataclass(frozen=True)
class Rendezvous:
    """Where the nodes meet: ``--nnodes/--node-rank/--master-addr/--master-port`` of torchrun."""

    node_rank: int = 0
    master_addr: str | None = None
    master_port: int | None = None


def refusals(config: Config, rdzv: Rendezvous) -> list[str]:
    """Why this launch cannot work on this machine (empty: it can)."""
    from importlib.util import find_spec

    import torch

    dist = config.distributed
    assert dist is not None
    out: list[str] = []
    cuda = torch.cuda.is_available()
    if dist.device == "cuda" and not cuda:
        out.append("distributed.device: cuda, but torch sees no CUDA device here (a CPU build of torch, or no GPU)")
    on = worlds.device(config) if not (dist.device == "cuda" and not cuda) else "cuda"
    if dist.comm_backend == "nccl" and not cuda:
        out.append("distributed.comm_backend: nccl needs CUDA devices, and torch sees none here; use gloo (CPU) "
                   "or run on a GPU machine")
    if on == "cuda" and cuda and dist.processes > torch.cuda.device_count():
        out.append(f"distributed.processes: {dist.processes} processes, but this node has "
                   f"{torch.cuda.device_count()} CUDA device(s): one process per device")
    if on == "cpu":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        if dist.processes > cores:
            out.append(f"distributed.processes: {dist.processes} processes on CPU, but this machine gives this job "
                       f"{cores} core(s): at most one process per core")
    if dist.backend == "fsdp" and on == "cpu":
        out.append("distributed.backend: fsdp needs CUDA devices: accelerate (the Trainer's engine) applies FSDP "
                   "only on accelerators, and on CPU would silently train unsharded; on CPU use backend: ddp")
    if dist.backend == "deepspeed":
        if find_spec("deepspeed") is None:
            out.append("distributed.backend: deepspeed, but DeepSpeed is not installed: pip install deepspeed "
                       "(on the GPU machine), or use backend: fsdp (FSDP2, part of torch)")
        elif on == "cpu":
            out.append("distributed.backend: deepspeed trains on CUDA devices here; on CPU use backend ddp or fsdp")
    if dist.nodes > 1 and not rdzv.master_addr:
        out.append(f"distributed.nodes: {dist.nodes} nodes need a meeting point: --master-addr HOST (node 0's "
                   "address) and --node-rank R on each node")
    if rdzv.node_rank >= dist.nodes:
        out.append(f"--node-rank: {rdzv.node_rank} is not below distributed.nodes ({dist.nodes})")
    return out


def command(config: Config, config_path: str, passthrough: list[str], rdzv: Rendezvous) -> list[str]:
    """torchrun's command line that starts this run's processes on this node."""
    dist = config.distributed
    assert dist is not None
    cmd = [sys.executable, "-m", "torch.distributed.run"]
    if dist.nodes == 1:
        cmd += ["--standalone", "--nnodes", "1"]
    else:
        cmd += ["--nnodes", str(dist.nodes), "--node-rank", str(rdzv.node_rank),
                "--master-addr", str(rdzv.master_addr), "--master-port", str(rdzv.master_port or dist.master_port)]
    cmd += ["--nproc-per-node", str(dist.processes), "--max-restarts", "0",
            "-m", "tunesmith.cli.main", "train", config_path, *passthrough]
    return cmd


def show(cmd: list[str]) -> str:
    return shlex.join(cmd)


_FAILED = re.compile(r"rank\s*:\s*(\d+)\s*\(local_rank:\s*(\d+)\)\s*\n?\s*exitcode\s*:\s*(-?\d+)")
_SIGNALS = {-9: "SIGKILL", -15: "SIGTERM", -6: "SIGABRT", -11: "SIGSEGV", -2: "SIGINT"}


def run(cmd: list[str], output_dir: Path, say: Callable[[str], None] = print) -> None:
    """Run torchrun; on failure say which rank failed and why, mark the attempt failed, raise LaunchError."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TUNESMITH_LAUNCHER": "1"}  # the children's environment only
    tail: deque[str] = deque(maxlen=400)
    with subprocess.Popen(cmd, stdout=sys.stdout, stderr=subprocess.PIPE, text=True, env=env) as proc:
        assert proc.stderr is not None
        for line in proc.stderr:
            sys.stderr.write(line)
            tail.append(line)
        code = proc.wait()
    if code == 0:
        return
    what = _failures("".join(tail)) or f"torch.distributed.run exited with code {code}"
    message = (f"the distributed job stopped: {what}; torchrun stops every rank when one fails (none is left "
               "waiting). "
               + _resume_hint(output_dir))
    _mark_failed(output_dir, what)
    raise LaunchError(message)


def _failures(text: str) -> str:
    """torchrun's failure report in one line: the root cause (the first rank to fail), then the others."""
    before, _, root = text.rpartition("Root Cause")
    first = _FAILED.findall(root) if root and before else []
    others = _FAILED.findall(before if first else text)
    if not first and not others:
        return ""
    say = lambda r, lr, e: f"rank {r} (local rank {lr}) stopped ({_SIGNALS.get(int(e), f'exit code {e}')})"
    if not first:
        return "; ".join(say(*f) for f in others)
    rest = [say(*f) for f in others if f[:2] != first[0][:2]]
    return say(*first[0]) + (f" first (then {', '.join(rest)})" if rest else "")


def _resume_hint(output_dir: Path) -> str:
    from tunesmith.train import checkpoints as ckpt

    done = ckpt.complete_checkpoints(output_dir / "checkpoints")
    if done:
        return (f"{output_dir} keeps its last complete checkpoint ({done[-1].name}): run the same command again "
                "to resume from it (same number of processes)")
    return f"no complete checkpoint was written to {output_dir}: running the same command again starts over"


def _mark_failed(output_dir: Path, what: str) -> None:
    """The job's cause in run.json: rank 0 may have been stopped before it recorded its attempt's end,
    or recorded only what it saw (its peer's connection closing)."""
    from tunesmith.train.rundir import RunDir

    rundir = RunDir(output_dir)
    record = rundir.read_run()
    if record.get("status") in ("starting", "running", "failed"):
        own = record.get("error") if record.get("status") == "failed" else None  # rank 0's view, e.g. "peer closed"
        rundir.end_attempt("failed", error=f"distributed job stopped: {what}" + (f" (rank 0: {own})" if own else ""))
