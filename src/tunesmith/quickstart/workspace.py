"""The quickstart's data files and run config, from ``recipe.yaml`` and the task generators."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from tunesmith.config import Config, config_from_dict
from tunesmith.quickstart import tasks
from tunesmith.quickstart.base import recipe

PARAPHRASE = "paraphrase"  # the hand-written split; its eval tasks are named <task>_paraphrase


def write_data(out: Path, profile: str) -> dict[str, dict[str, Path]]:
    """``out/data/<split>/<task>.jsonl`` chat rows for train / validation / test / paraphrase;
    returns ``{split: {task: path}}``."""
    chosen = recipe()["finetune"]["profiles"][profile]
    sizes = {task: tuple(n) for task, n in chosen["sizes"].items()}
    splits = {**tasks.splits(sizes, recipe()["seed"]), PARAPHRASE: tasks.paraphrases()}
    files: dict[str, dict[str, Path]] = {}
    for split, per_task in splits.items():
        trained = split in ("train", "validation")  # the rows training reads (test-side wording elsewhere)
        for task, examples in per_task.items():
            if chosen.get("instructions"):
                rng = random.Random(f"instructions:{task}:{split}:{recipe()['seed']}")
                examples = [tasks.instructed(ex, "train" if trained else "test", rng) for ex in examples]
            path = out / "data" / split / f"{task}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            weight = chosen.get("loss_weights", {}).get(task) if trained else None
            with path.open("w", encoding="utf-8") as fh:
                for ex in examples:
                    answer = {"role": "assistant", "content": ex.answer, **({"loss_weight": weight} if weight else {})}
                    row = {"messages": [{"role": "user", "content": ex.user}, answer]}
                    fh.write(json.dumps(row) + "\n")
            files.setdefault(split, {})[task] = path
    return files


def replay_file(out: Path) -> Path:
    """Where ``add_replay`` writes the replay rows of the quickstart in ``out``."""
    return out / "data" / "train" / "general.jsonl"


def add_replay(out: Path, base_model: Path, profile: str, files: dict[str, dict[str, Path]]) -> int:
    """Under the profile's ``replay`` settings, the base model's own replies to general requests as one
    more training file, ``replay_file(out)`` (``quickstart.replay``), added to ``files``; returns its row
    count (0 when the profile has no replay)."""
    from tunesmith.quickstart import replay

    spec = recipe()["finetune"]["profiles"][profile].get("replay")
    if not spec:
        return 0
    path, rows = replay.write(replay_file(out), base_model, tasks.system_prompt(),
                              spec["max_new_tokens"])
    files["train"]["general"] = path
    return rows


def eval_tasks(files: dict[str, dict[str, Path]]) -> list[dict[str, Any]]:
    """The ``eval_tasks`` entries: each task on the test split, then on the paraphrase split."""
    out = []
    for split, suffix in (("test", ""), (PARAPHRASE, f"_{PARAPHRASE}")):
        for name, spec in recipe()["evaluate"]["tasks"].items():
            task: dict[str, Any] = {"name": name + suffix, "path": str(files[split][name]), "scorer": spec["scorer"],
                                    "max_new_tokens": spec["max_new_tokens"]}
            if spec["scorer"] == "json":
                task.update(json_schema=spec["schema"], tolerance=spec["tolerance"])
            elif spec["scorer"] == "label":
                task["labels"] = tasks.catalogue()["tickets"]["labels"]
            else:
                task["abstention"] = tasks.catalogue()["qa"]["abstention"]
            out.append(task)
    return out


def build_config(base_model: Path, files: dict[str, dict[str, Path]], out: Path, profile: str) -> Config:
    """The LoRA SFT run config (written to ``out/quickstart.yaml`` so it can be rerun by hand)."""
    from tunesmith.config.loader import dump_yaml

    spec = recipe()["finetune"]
    chosen = spec["profiles"][profile]
    raw = {
        **spec["config"],
        **chosen.get("config", {}),
        "base_model": str(base_model),
        "system_prompt": tasks.system_prompt(),
        "datasets": [{"path": str(p)} for p in files["train"].values()],
        "eval_datasets": [{"path": str(p)} for p in files["validation"].values()],
        # the audit's leakage check compares training rows with both test splits
        "test_datasets": [{"path": str(p)} for split in ("test", PARAPHRASE) for p in files[split].values()],
        "num_epochs": chosen["epochs"],
        "eval_batch_size": recipe()["evaluate"]["batch_size"],
        # the base model's replies are the same on every run: reuse them (tunesmith.infer.cache)
        "eval_cache": True,
        "eval_tasks": eval_tasks(files),
        "output_dir": str(out / "run"),
        "seed": recipe()["seed"],
    }
    config = config_from_dict(raw, source=str(out / "quickstart.yaml"))
    (out / "quickstart.yaml").write_text(dump_yaml(config), "utf-8")
    return config
