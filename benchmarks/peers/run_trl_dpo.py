"""A plain TRL ``DPOTrainer`` script on the benchmark's preference pairs, driven by its spec file.

    python run_trl_dpo.py SPEC.json
"""

from __future__ import annotations

import json
import sys

spec = json.load(open(sys.argv[1]))
sys.path.insert(0, spec["probe_dir"])

import torch  # noqa: E402
from datasets import load_dataset  # noqa: E402
from peft import LoraConfig  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402
from trl import DPOConfig, DPOTrainer  # noqa: E402

from probe import Probe  # noqa: E402

tok = AutoTokenizer.from_pretrained(spec["model"])
model = AutoModelForCausalLM.from_pretrained(spec["model"], dtype=torch.float32)
data = load_dataset("json", data_files=spec["data_preference"], split="train")
args = DPOConfig(
    output_dir=spec["out"], per_device_train_batch_size=spec["batch"], max_steps=spec["steps"],
    learning_rate=spec["lr"], lr_scheduler_type="cosine", warmup_steps=0.1, max_length=spec["seq"], beta=0.1,
    loss_type=["sigmoid"], use_cpu=True, bf16=spec["bf16"], gradient_checkpointing=False, report_to=[],
    logging_steps=1, save_strategy="no", disable_tqdm=True, seed=42, dataloader_num_workers=0,
)
lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")
trainer = DPOTrainer(model=model, args=args, train_dataset=data, processing_class=tok,
                     peft_config=lora if spec["adapter"] == "lora" else None,
                     callbacks=[Probe(spec["result"], spec["pad_id"])])
trainer.train()
