"""``tunesmith.train.run`` driven by the benchmark's spec file (the same call ``tunesmith train`` makes).

    python run_tunesmith.py SPEC.json

With ``spec["src"]`` (an exported older checkout, e.g. today's main) that tree is imported instead
of the installed package; such a tree may predate ``run(callbacks=...)``, and then the probe is
appended by wrapping its ``trainers.build_sft`` (benchmark harness only).
"""

from __future__ import annotations

import inspect
import json
import sys

spec = json.load(open(sys.argv[1]))
sys.path.insert(0, spec["probe_dir"])
if spec.get("src"):
    sys.path.insert(0, spec["src"])

from probe import Probe  # noqa: E402
from tunesmith.config import config_from_dict  # noqa: E402
from tunesmith.train import run  # noqa: E402

probe = Probe(spec["result"], spec["pad_id"])
lora = spec["adapter"] == "lora"
raw = {
    "base_model": spec["model"], "output_dir": spec["out"],
    "datasets": [{"path": spec["data_preference"], "type": "preference"} if spec.get("stage") == "dpo"
                 else {"path": spec["data_chat"], "type": "chat"}],
    "method": spec.get("stage", "sft"), "adapter": "lora" if lora else "none", "sequence_len": spec["seq"],
    "micro_batch_size": spec["batch"], "max_steps": spec["steps"], "learning_rate": spec["lr"],
    "warmup_ratio": 0.1 if spec.get("stage") == "dpo" else 0.05, "lr_scheduler": "cosine", "bf16": spec["bf16"], "logging_steps": 1, "seed": 42,
    "val_set_size": 0,  # no evaluation inside the timed steps, as the peers run (and no rows held back)
    **spec.get("tunesmith", {}),
}
if lora:
    raw.update({"lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.05})
from tunesmith.config import Config  # noqa: E402

if "sample_generations" in Config.model_fields and "sample_generations" not in raw:
    # no generation inside the timed steps, as the peers run (on by default: a quarter of the run apart)
    raw["sample_generations"] = 0
config = config_from_dict(raw)
if "callbacks" in inspect.signature(run).parameters:
    run(config, overwrite=True, quiet=True, say=lambda s: None, callbacks=[probe])
else:
    from tunesmith.train import trainers

    for name in ("build_sft", "build_dpo"):
        original = getattr(trainers, name)

        def wrapped(*args, _original=original, **kwargs):  # noqa: ANN002, ANN003
            trainer = _original(*args, **kwargs)
            trainer.add_callback(probe)
            return trainer

        setattr(trainers, name, wrapped)
    run(config, overwrite=True, quiet=True, say=lambda s: None)
