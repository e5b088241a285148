"""The ``distributed:`` section, peers' keys translated into it, the launch command and the refusals
before launch, and resume refusing another world size (no process is launched here)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tunesmith.config import load_config
from tunesmith.errors import ConfigError

from conftest import run_main


def _write(tmp: Path, body: str, name: str = "run.yaml") -> Path:
    data = tmp / "d.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"},
                                             {"role": "assistant", "content": "ok"}]}) + "\n")
    path = tmp / name
    path.write_text(f"base_model: ./m\ndatasets:\n  - path: {data}\noutput_dir: {tmp / 'out'}\n" + body)
    return path


def test_section_defaults_and_world_size(tmp_path) -> None:
    cfg = load_config(_write(tmp_path, "distributed:\n  processes: 4\n  nodes: 2\n"))
    dist = cfg.distributed
    assert (dist.backend, dist.world_size, dist.plan_sharding, dist.offload) == ("ddp", 8, "none", "none")
    assert load_config(_write(tmp_path, "")).distributed is None


@pytest.mark.parametrize("body, line, message", [
    ("distributed:\n  backend: horovod\n", 6, "distributed.backend: must be one of ddp, fsdp, deepspeed"),
    ("distributed:\n  processes: 0\n", 6, "must be > 0 (got 0)"),
    ("distributed:\n  backend: ddp\n  zero_stage: 3\n", 7, "a ZeRO stage needs backend: deepspeed"),
    ("distributed:\n  backend: ddp\n  offload: all\n", 7, "offloading needs backend fsdp or deepspeed"),
    ("distributed:\n  backend: deepspeed\n  zero_stage: 2\n  offload: all\n", 8, "needs zero_stage: 3"),
    ("distributed:\n  backend: fsdp\n  fsdp_sharding: hybrid_shard\n", 7, "exists only in FSDP1"),
    ("distributed:\n  backend: fsdp\n  fsdp_options: {fsdp_offload_param: true}\n", 7, "did you mean 'offload_params'"),
    ("distributed:\n  device: cpu\n  comm_backend: nccl\n", 7, "nccl runs between CUDA devices only"),
    ("distributed:\n  procesess: 2\n", 6, "did you mean"),
    ("hardware:\n  gpus: 4\ndistributed:\n  processes: 2\n", 6, "hardware.gpus: 4 contradicts distributed"),
    ("hardware:\n  sharding: zero2\ndistributed:\n  backend: fsdp\n", 6, "hardware.sharding: zero2 contradicts"),
])
def test_bad_sections_name_file_and_line(tmp_path, body, line, message) -> None:
    path = _write(tmp_path, body)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}:{line}: "), str(err.value)
    assert message in str(err.value)


def test_plan_sizes_what_distributed_says(tmp_path) -> None:
    """plan's memory model reads the same choice: ZeRO-3 over 4 processes = hardware zero3 x 4."""
    from tunesmith.plan.device import Device
    from tunesmith.plan.run import PlanOptions, setup_for
    from tunesmith.plan.tokens import DataStats

    cfg = load_config(_write(tmp_path, "distributed:\n  backend: deepspeed\n  zero_stage: 3\n  processes: 4\n"))
    device = Device("H100", "gpu", 80.0, 989.0, True, "test")
    stats = DataStats(10, 100, 100, 10, "test", "sft", False)
    setup = setup_for(cfg, device, stats, {"lora_r": 8}, PlanOptions())
    assert (setup.gpus, setup.sharding) == (4, "zero3")
    assert setup_for(cfg, device, stats, {"lora_r": 8}, PlanOptions(gpus=2, sharding="zero1")).sharding == "zero1"
    fsdp = load_config(_write(tmp_path, "distributed:\n  backend: fsdp\n  fsdp_sharding: shard_grad_op\n"))
    assert fsdp.distributed.plan_sharding == "zero2"
    same = load_config(_write(tmp_path, "hardware:\n  gpus: 4\n  sharding: zero3\ndistributed:\n  backend: deepspeed\n"
                                        "  zero_stage: 3\n  processes: 4\n"))
    assert same.hardware.gpus == same.distributed.world_size


def test_axolotl_deepspeed_json_and_fsdp_keys_are_translated(tmp_path) -> None:
    ds = tmp_path / "zero3.json"
    ds.write_text(json.dumps({"zero_optimization": {"stage": 3, "offload_optimizer": {"device": "cpu"},
                                                    "offload_param": {"device": "cpu"}}}))
    path = tmp_path / "axo.yml"
    path.write_text(f"base_model: ./m\ndatasets:\n  - path: {tmp_path}/d.jsonl\n    type: alpaca\n"
                    f"deepspeed: {ds}\nddp_timeout: 600\nadapter: lora\nlora_r: 8\nmicro_batch_size: 1\n")
    cfg = load_config(path, tool="axolotl")
    dist = cfg.distributed
    assert (dist.backend, dist.zero_stage, dist.offload, dist.timeout_s) == ("deepspeed", 3, "all", 600)
    assert dist.deepspeed_config == str(ds)  # used as written
    kinds = {n.path: n.kind for n in cfg.notes}
    assert kinds["deepspeed"] == "applied" and kinds["ddp_timeout"] == "applied"


def test_llamafactory_example_deepspeed_name_and_fsdp_string(tmp_path) -> None:
    path = tmp_path / "lf.yaml"
    path.write_text(f"model_name_or_path: ./m\nstage: sft\ndo_train: true\nfinetuning_type: lora\ndataset_dir: {tmp_path}\n"
                    "dataset: d\ntemplate: qwen\ndeepspeed: examples/deepspeed/ds_z2_offload_config.json\n")
    (tmp_path / "dataset_info.json").write_text(json.dumps({"d": {"file_name": "d.jsonl"}}))
    (tmp_path / "d.jsonl").write_text(json.dumps({"instruction": "a", "input": "", "output": "b"}) + "\n")
    dist = load_config(path, tool="llamafactory").distributed
    # LLaMA-Factory's shipped example, not present here: its name says ZeRO-2 + optimizer offload
    assert (dist.backend, dist.stage, dist.offload, dist.deepspeed_config) == ("deepspeed", 2, "optimizer", None)
    hf = _write(tmp_path, "fsdp: full_shard offload auto_wrap\nfsdp_config:\n  fsdp_transformer_layer_cls_to_wrap: "
                          "LlamaDecoderLayer\n  fsdp_state_dict_type: FULL_STATE_DICT\n", "hf.yaml")
    dist = load_config(hf).distributed
    assert (dist.backend, dist.fsdp_sharding, dist.offload) == ("fsdp", "full_shard", "all")
    assert dist.fsdp_options == {"transformer_layer_cls_to_wrap": "LlamaDecoderLayer", "state_dict_type": "FULL_STATE_DICT"}


def test_deepspeed_and_fsdp_together_are_refused(tmp_path) -> None:
    path = _write(tmp_path, "deepspeed: ds_z3_config.json\nfsdp: full_shard\n")
    with pytest.raises(ConfigError, match="distributed.backend: set twice"):
        load_config(path)


def test_trainer_args_per_backend(tmp_path) -> None:
    from tunesmith.train.world import World, deepspeed_config, trainer_args

    fsdp = load_config(_write(tmp_path, "distributed:\n  backend: fsdp\n  device: cpu\n  processes: 2\n"))
    args = trainer_args(fsdp, World(0, 0, 2, "fsdp"))
    assert args["fsdp"] is True and args["use_cpu"] is True and args["ddp_backend"] == "gloo"
    assert args["fsdp_config"]["version"] == 2 and args["fsdp_config"]["reshard_after_forward"] is True
    z3 = load_config(_write(tmp_path, "distributed:\n  backend: deepspeed\n  zero_stage: 3\n  offload: all\n"))
    zero = deepspeed_config(z3.distributed)["zero_optimization"]
    assert zero["stage"] == 3 and zero["stage3_gather_16bit_weights_on_model_save"] is True
    assert zero["offload_param"]["device"] == "cpu" and zero["offload_optimizer"]["device"] == "cpu"
    assert trainer_args(z3, World()) == {}  # one process: nothing changes


def test_print_launch_single_node_and_multi_node(tmp_path) -> None:
    path = _write(tmp_path, "distributed:\n  device: cpu\n")
    code, out, err = run_main("train", str(path), "--nproc", "2", "--print-launch", "--set", "max_steps=3")
    assert code == 0, err
    line = next(x.strip() for x in out.splitlines() if "torch.distributed.run" in x)
    assert "-m torch.distributed.run --standalone --nnodes 1 --nproc-per-node 2 --max-restarts 0 " \
           f"-m tunesmith.cli.main train {path} --set max_steps=3 --set distributed.processes=2" in line
    code, out, err = run_main("train", str(path), "--nproc", "8", "--nnodes", "4", "--node-rank", "3",
                              "--master-addr", "10.0.0.1", "--print-launch")
    assert code == 0, err
    assert ("--nnodes 4 --node-rank 3 --master-addr 10.0.0.1 --master-port 29500 --nproc-per-node 8" in out
            and "--set distributed.nodes=4" in out and "= 32" in out)


def test_refusals_before_launch(tmp_path) -> None:
    cores = len(os.sched_getaffinity(0))
    path = _write(tmp_path, "distributed:\n  device: cpu\n")
    code, out, err = run_main("train", str(path), "--nproc", str(cores + 1))
    assert code == 1 and f"{cores + 1} processes on CPU, but this machine gives this job {cores} core(s)" in err
    assert not (tmp_path / "out").exists()  # nothing started, nothing written
    import torch

    if not torch.cuda.is_available():
        code, out, err = run_main("train", str(_write(tmp_path, "distributed:\n  comm_backend: nccl\n")), "--nproc", "2")
        assert code == 1 and "nccl needs CUDA devices" in err
    from importlib.util import find_spec

    if find_spec("deepspeed") is None:
        code, out, err = run_main("train", str(_write(tmp_path, "distributed:\n  backend: deepspeed\n")), "--nproc", "1")
        assert code == 1 and "DeepSpeed is not installed: pip install deepspeed" in err
    code, out, err = run_main("train", str(path), "--nproc", "1", "--nnodes", "2")
    assert code == 1 and "need a meeting point: --master-addr" in err


def test_resume_refuses_another_world_size(tmp_path) -> None:
    """A checkpoint marked by 2 processes is never resumed by 1 (and the reverse)."""
    from tunesmith.config import config_from_dict
    from tunesmith.train import checkpoints as ckpt
    from tunesmith.train.guard import RunDirError
    from tunesmith.train.resume import decide

    out = tmp_path / "out"
    folder = out / "checkpoints" / "checkpoint-4"
    folder.mkdir(parents=True)
    for rank in range(2):
        (folder / f"rng_state_{rank}.pth").write_bytes(b"x")
    ckpt.mark_complete(folder, 4, world_size=2)
    cfg = config_from_dict({"base_model": "./m", "datasets": [{"path": "d.jsonl"}], "output_dir": str(out)})
    (out / "run.json").write_text(json.dumps({"status": "failed", "attempts": [{"pid": 1, "host": "elsewhere"}]}))
    (out / "config.yaml").write_text("")
    with pytest.raises(RunDirError, match=r"written by 2 process\(es\), this attempt runs 1.*--nproc 2"):
        decide(cfg, out, False, False, world_size=1)
    assert decide(cfg, out, False, False, world_size=2).kind == "resume"
    assert decide(cfg, out, False, True, world_size=1).kind == "fresh"  # --overwrite starts over at the new size


def test_marker_needs_every_ranks_rng_state(tmp_path) -> None:
    from tunesmith.train import checkpoints as ckpt

    (tmp_path / "rng_state_0.pth").write_bytes(b"x")
    with pytest.raises(RuntimeError, match=r"no RNG state of rank\(s\) \[1\]"):
        ckpt.mark_complete(tmp_path, 2, world_size=2)
    assert not (tmp_path / ckpt.MARKER).exists()


def test_fsdp_on_cpu_is_refused_before_launch(tmp_path) -> None:
    """accelerate ignores the FSDP plugin on CPU (it would train DDP and call it FSDP): refused."""
    path = _write(tmp_path, "distributed:\n  backend: fsdp\n  device: cpu\n")
    code, out, err = run_main("train", str(path), "--nproc", "2")
    assert code == 1 and "fsdp needs CUDA devices" in err and "silently train unsharded" in err


def test_an_unsharded_model_under_fsdp_stops_training() -> None:
    """The run-time guard: FSDP asked for, no parameter is a DTensor shard -> stop, never train on."""
    import torch
    from transformers import TrainerControl, TrainerState

    from tunesmith.errors import TunesmithError
    from tunesmith.train.callbacks import ScheduleRecord
    from tunesmith.train.world import World

    written: list[dict] = []
    model = torch.nn.Linear(4, 4)
    with pytest.raises(TunesmithError, match="did not shard the model"):
        ScheduleRecord(lambda **kw: written.append(kw), World(1, 1, 2, "fsdp")).on_train_begin(
            None, TrainerState(), TrainerControl(), model=model)
    assert written == []
