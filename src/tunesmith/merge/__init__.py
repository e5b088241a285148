"""merge: fold a LoRA-family adapter into its base and prove the merged model is the same model
(``run``); merge several fine-tunes of one base (linear, slerp, ties, dare_ties, dare_linear) through
mergekit, or as adapters (PEFT's cat, each layer's delta), and score the merge against its sources (``combine``)."""

from tunesmith.merge.combine import CombineOptions, CombineResult, combine, prepare
from tunesmith.merge.compare import Comparison, TaskRow
from tunesmith.merge.methods import MergeMethod, method, methods
from tunesmith.merge.run import MergeCheckFailed, MergeResult, probe_prompts, raise_if_failed, run, verify

__all__ = ["CombineOptions", "CombineResult", "Comparison", "MergeCheckFailed", "MergeMethod", "MergeResult",
           "TaskRow", "combine", "method", "methods", "prepare", "probe_prompts", "raise_if_failed", "run", "verify"]
