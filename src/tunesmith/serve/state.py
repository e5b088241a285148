"""Everything one running server shares: config, models, engine, log, metrics, API key."""

from __future__ import annotations

from dataclasses import dataclass

from tunesmith.serve.config import ServeConfig, required_api_key
from tunesmith.serve.engine import Engine
from tunesmith.serve.grammar import Grammars
from tunesmith.serve.log import RequestLog
from tunesmith.serve.metrics import Metrics
from tunesmith.serve.models import Models


@dataclass
class State:
    config: ServeConfig
    models: Models
    engine: Engine
    grammars: Grammars
    log: RequestLog
    metrics: Metrics
    api_key: str | None


def api_key(config: ServeConfig) -> str | None:
    """The key from ``config.api_key_env``; refuses a non-loopback host without one."""
    return required_api_key(config.host, config.api_key_env)


def build(config: ServeConfig) -> State:
    """Check the security settings, load the model and adapters, open the log, start the engine."""
    key = api_key(config)
    models = Models(config)
    engine = Engine(models, config.max_batch_size, config.max_queue)
    log = RequestLog(config.db)
    metrics = Metrics(lambda: engine.queue_depth, lambda: len(engine.active))
    engine.start()
    return State(config, models, engine, Grammars(models.vocab_size), log, metrics, key)
