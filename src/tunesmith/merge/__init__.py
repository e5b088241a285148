"""merge: fold a LoRA-family adapter into its base and prove the merged model is the same model."""

from tunesmith.merge.run import MergeResult, run

__all__ = ["MergeResult", "run"]
