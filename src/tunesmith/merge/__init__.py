"""merge: fold a LoRA-family adapter into its base and prove the merged model is the same model."""

from tunesmith.merge.run import MergeCheckFailed, MergeResult, probe_prompts, raise_if_failed, run, verify

__all__ = ["MergeCheckFailed", "MergeResult", "probe_prompts", "raise_if_failed", "run", "verify"]
