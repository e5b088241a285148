"""Plan a run before loading any weights: memory per device, time, cost, and the method to use.

``run(config) -> PlanResult`` reads the model's config.json (never its weights) and the data
(tokenized through the tokenize stage when the tokenizer is on disk); ``check_fit`` is
``train``'s guard before it loads the model. ``advise`` walks the seed's decision tables.
"""

from tunesmith.plan.run import PlanOptions, PlanResult, check_fit, run
from tunesmith.plan.shapes import PlanError

__all__ = ["PlanError", "PlanOptions", "PlanResult", "check_fit", "run"]
