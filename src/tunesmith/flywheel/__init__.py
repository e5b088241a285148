"""flywheel: production logs -> failure mining -> review -> next training set -> retrain -> gate.

``mine(MineOptions)`` reads the serving stage's request log (``serve.read_log``), flags requests
by the signals of one table (``signals.SIGNALS``: thumbs-down, correction, format failure, judge
score, low confidence, refusal), clusters near-duplicate prompts with the audit's MinHash code and
ranks clusters by size x severity into a review queue (``queue.py``). ``review.walk`` /
``review.import_queue`` fill and validate the verdicts. ``build(BuildOptions)`` turns a reviewed
queue + production positives + a replay sample of the original data into the next training set,
deduplicated, audited and checked against the eval/golden sets, with a manifest. ``run(FlywheelConfig)``
is one iteration end to end: mine, build, train, evaluate, gate, ``lineage.json``.
"""

from tunesmith.flywheel.build import BuildOptions, BuildResult, build
from tunesmith.flywheel.mine import MineOptions, MineResult, mine
from tunesmith.flywheel.run import IterationResult, run
from tunesmith.flywheel.review import Answer, ImportResult, WalkResult, import_queue, walk
from tunesmith.flywheel.signals import SIGNALS

__all__ = ["SIGNALS", "Answer", "BuildOptions", "BuildResult", "ImportResult", "IterationResult", "MineOptions",
           "MineResult", "WalkResult", "build", "import_queue", "mine", "run", "walk"]
