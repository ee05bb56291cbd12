"""Settings, read from environment variables (INTENTWATCH_*), with defaults and validation.

Every setting names its variable; a bad value raises an error that names the variable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields

from .retention import DEFAULT_RETENTION_SECONDS


def _env(name: str, default, cast):
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return cast(raw)
    except ValueError as exc:
        raise ValueError(f"{name}={raw!r} is not valid: {exc}") from None


@dataclass(frozen=True)
class Settings:
    broker: str = "kafka://127.0.0.1:9092"
    app_id: str = "intentwatch"
    topic_intents: str = "agent.intents"
    topic_actions: str = "agent.actions"
    topic_decisions: str = "agent.decisions"
    topic_alerts: str = "agent.alerts"
    topic_revocations: str = "agent.revocations"
    topic_dead_letters: str = "agent.deadletters"
    topic_acks: str = "agent.revocations.acks"
    partitions: int = 4
    catalog: str = ""                 # path of a tool catalog JSON; empty: all tools unknown
    alert_at: float = 0.5
    revoke_at: float = 0.9
    max_event_bytes: int = 512 * 1024
    web_port: int = 6066
    data_dir: str = "intentwatch-data"
    fast_rebalance: bool = False      # short session/rebalance timeouts (tests, demo)
    model_snapshot_seconds: float = 30.0  # how often learned models are saved to Kafka
    signing_key: str = ""             # PEM file of the Ed25519 key that signs revoke commands
    verify_keys: str = ""             # comma-separated PEM files of trusted public keys
    alertmanager_url: str = ""        # Alertmanager-compatible webhook (.../api/v2/alerts)
    # Event-time seconds a task's state is kept after it is over (task.end, or its intent's
    # expires_at for a task that never ended; see monitor.retention), then freed. One hour by
    # default: late events of an ended task (an agent still acting, a late completion) are
    # still refused and explained with the task's own state for that long, and the store
    # holds about (tasks ending per second) x retention compact ended states (~650 bytes
    # each serialized): 100 tasks/s -> 360,000 states. After it, an event of the task is
    # treated as one of a new task without intent (held, alerted `no_intent`).
    retention_seconds: float = DEFAULT_RETENTION_SECONDS
    # The decision agent takes up to batch_max records at a time, and yields what it has every
    # batch_wait seconds when fewer came: that wait adds to a decision's latency when traffic
    # is light, a smaller one costs more CPU per event (BENCHMARKS.md, latency).
    batch_max: int = 500
    batch_wait: float = 0.002
    # Task states (and delegation entries) the worker keeps decoded, most recently used first:
    # a state in the cache is not decoded again at its task's next event. About 6 KB each.
    state_cache: int = 10_000
    # bearer token of POST /v1/decide (empty: the endpoint refuses every request); a secret,
    # so it stays out of repr() and logs
    decide_token: str = field(default="", repr=False)

    @classmethod
    def from_env(cls) -> Settings:
        values = {}
        for f in fields(cls):
            name = "INTENTWATCH_" + f.name.upper()
            cast = {bool: _bool, int: int, float: float, str: str}[type(f.default)]
            values[f.name] = _env(name, f.default, cast)
        s = cls(**values)
        s.validate()
        return s

    def validate(self) -> None:
        if not self.broker.startswith(("kafka://", "aiokafka://")):
            raise ValueError("INTENTWATCH_BROKER must look like kafka://host:port")
        if self.partitions < 1:
            raise ValueError("INTENTWATCH_PARTITIONS must be at least 1")
        if not 0 < self.alert_at <= self.revoke_at <= 1:
            raise ValueError("INTENTWATCH_ALERT_AT and INTENTWATCH_REVOKE_AT must satisfy "
                             "0 < alert_at <= revoke_at <= 1")
        if self.model_snapshot_seconds <= 0:
            raise ValueError("INTENTWATCH_MODEL_SNAPSHOT_SECONDS must be positive")
        if not self.retention_seconds >= 0:
            raise ValueError("INTENTWATCH_RETENTION_SECONDS must be at least 0")
        if self.batch_max < 1:
            raise ValueError("INTENTWATCH_BATCH_MAX must be at least 1")
        if not 0 < self.batch_wait <= 1:
            raise ValueError("INTENTWATCH_BATCH_WAIT must be in (0, 1] seconds")
        if self.state_cache < 0:
            raise ValueError("INTENTWATCH_STATE_CACHE must be at least 0")
        if self.max_event_bytes < 1024:
            raise ValueError("INTENTWATCH_MAX_EVENT_BYTES must be at least 1024")

    def topics(self) -> list[str]:
        return [self.topic_intents, self.topic_actions, self.topic_decisions, self.topic_alerts,
                self.topic_revocations, self.topic_dead_letters, self.topic_acks]

    @property
    def bootstrap(self) -> str:
        """host:port list for plain aiokafka clients."""
        return self.broker.split("://", 1)[1].replace(";", ",")


def _bool(raw: str) -> bool:
    low = raw.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")
