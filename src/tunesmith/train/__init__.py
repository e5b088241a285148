"""Training stage: SFT / continual pretraining / DPO with PEFT adapters or full fine-tuning.

``run(config)`` ingests, audits and tokenizes the data (tunesmith's own masks and packing),
then lets transformers' Trainer (SFT, cpt) or TRL's DPOTrainer optimise, while tunesmith owns
the run directory, checkpoints, watchdog and the saved artifacts.
"""

from tunesmith.train.run import TrainResult, run

__all__ = ["TrainResult", "run"]
