"""``tunesmith ui``: a local web dashboard over what the lifecycle leaves on disk.

Pages: Runs (table, live progress, loss curves, compare two runs), Evaluate (metrics per task and
category, confusion matrices, generations side by side with filters, the gate's verdict), Data
(the audit with the offending rows, tokenized rows with trained tokens highlighted), Playground
(chat with a running ``tunesmith serve``, thumbs up/down into its feedback log), New run (resolved
config + plan, then ``tunesmith train``), Review queue (the flywheel's mined items, decided one by
one into the queue file). Served by FastAPI on loopback unless an API key is configured.

``run(config)`` serves until interrupted; ``start(config)`` serves in a background thread (tests).
"""

from tunesmith.ui.config import UIConfig
from tunesmith.ui.server import Server, run, start

__all__ = ["Server", "UIConfig", "run", "start"]
