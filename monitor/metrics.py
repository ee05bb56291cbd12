"""Prometheus metrics of the monitor (prometheus-client). The stream layer and replay update
them; the worker serves them at /metrics.

The per-event metrics are counted in a `Tally` (plain ints) and written once per batch:
`labels()` validates and locks on every call, and each `inc()` takes a lock, which together
cost about as much as deciding a cheap event.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter as Tallies
from functools import cache
from importlib.metadata import PackageNotFoundError, version

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

# No `_created` series next to every counter and histogram: twice the series for nothing
# Prometheus uses here.
disable_created_metrics()

REGISTRY = CollectorRegistry(auto_describe=True)
# process_resident_memory_bytes, process_cpu_seconds_total...: read from /proc at each scrape.
ProcessCollector(registry=REGISTRY)

EVENTS = Counter("intentwatch_events_total", "Events received, by type",
                 ["type"], registry=REGISTRY)
DECISIONS = Counter("intentwatch_decisions_total", "Decisions, by verdict",
                    ["verdict"], registry=REGISTRY)
REVOCATIONS = Counter("intentwatch_revoke_commands_total", "Revoke commands issued",
                      registry=REGISTRY)
DEAD_LETTERS = Counter("intentwatch_dead_letters_total",
                       "Records that broke the contract, by reason", ["reason"],
                       registry=REGISTRY)
# What the engine did with events out of the ordinary (counted by monitor.engine.Engine).
HANDLING = Counter("intentwatch_event_handling_total",
                   "Events the engine did not decide plainly in order, by kind: duplicate, "
                   "late, held_for_intent, end_held_for_intent, no_intent, intent_after_end",
                   ["kind"], registry=REGISTRY)
LATENCY = Histogram("intentwatch_decision_latency_seconds",
                    "Time to decide one event inside the worker",
                    buckets=(1e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 5e-2, 0.1),
                    registry=REGISTRY)

# Buckets at the policy's default thresholds (alert 0.5, revoke 0.9); le="0" counts the
# decisions no detector found anything in.
RISK = Histogram("intentwatch_decision_risk", "Fused risk of each decision, in [0, 1]",
                 buckets=(0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0),
                 registry=REGISTRY)

# A label value's child never changes: look each up once. (The label values are small closed
# sets: event types, verdicts, dead-letter reasons, ack statuses.)
events_of = cache(EVENTS.labels)
decisions_of = cache(DECISIONS.labels)
dead_letters_of = cache(DEAD_LETTERS.labels)

ACK_SECONDS = Histogram("intentwatch_revoke_ack_seconds",
                        "From the offending event to the enforcement acknowledgement",
                        buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
                        registry=REGISTRY)
ACKS = Counter("intentwatch_revoke_acks_total", "Acknowledgements of revoke commands, by status",
               ["status"], registry=REGISTRY)
acks_of = cache(ACKS.labels)

# Gauges set by the worker's timers and its model snapshots, not per event.
ACTIVE_TASKS = Gauge("intentwatch_active_tasks",
                     "Tasks whose state the worker holds that are running (not ended, not "
                     "expired)", registry=REGISTRY)
CONSUMER_LAG = Gauge("intentwatch_consumer_lag_records",
                     "Records of an assigned input partition not decided yet: end offset "
                     "minus one past the last record acked", ["topic", "partition"],
                     registry=REGISTRY)
MODEL_STATE = Gauge("intentwatch_model_state_bytes",
                    "Size of a learned model's state at its latest snapshot, uncompressed",
                    ["model"], registry=REGISTRY)
MODEL_SNAPSHOT = Gauge("intentwatch_model_snapshot_bytes",
                       "Size of a learned model's latest snapshot record as sent to Kafka "
                       "(compressed; must stay under the topic's max.message.bytes)",
                       ["model"], registry=REGISTRY)
# Counted at a worker's start, as it restores its models (streams.models.restore).
SNAPSHOTS_REJECTED = Counter("intentwatch_model_snapshots_rejected_total",
                             "Model snapshot records a worker skipped or refused at its start, "
                             "by detector (unknown: a record of no learned detector)",
                             ["detector"], registry=REGISTRY)
snapshots_rejected_of = cache(SNAPSHOTS_REJECTED.labels)
BUILD_INFO = Gauge("intentwatch_build_info", "Always 1; the running intentwatch version",
                   ["version"], registry=REGISTRY)
try:
    BUILD_INFO.labels(version("intentwatch")).set(1)
except PackageNotFoundError:  # run from a source tree that was never installed
    BUILD_INFO.labels("unknown").set(1)


def set_consumer_lag(lags: dict[tuple[str, int], int]) -> None:
    """Replace the lag series with `lags` ((topic, partition) -> records): partitions no
    longer assigned lose their series. (The exposition runs on the same event loop, so no
    scrape sees the gauge between clear and set.)"""
    CONSUMER_LAG.clear()
    for (topic, partition), lag in lags.items():
        CONSUMER_LAG.labels(topic, str(partition)).set(lag)


def model_snapshotted(model: str, state_bytes: int, snapshot_bytes: int) -> None:
    MODEL_STATE.labels(model).set(state_bytes)
    MODEL_SNAPSHOT.labels(model).set(snapshot_bytes)


def observe_ack(ack: dict) -> None:
    """An enforcer's acknowledgement. Times are the offending event's time (the command's
    issued_at) and the enforcer's wall clock, so they are only as comparable as the clocks of
    the agent runtime and the enforcer. A redelivered command that the enforcer acks as a
    duplicate (rejected as replayed, not acted on twice) counts as `duplicate`, not `rejected`:
    `rejected` is what an alert watches (forged, expired commands)."""
    status = ack.get("status")
    if ack.get("duplicate") is True:
        status = "duplicate"
    acks_of(status if status in ("enforced", "rejected", "failed", "duplicate")
            else "other").inc()
    issued, acked = ack.get("issued_at"), ack.get("acked_at")
    if status == "enforced" and isinstance(issued, (int, float)) and \
            isinstance(acked, (int, float)) and acked >= issued:
        ACK_SECONDS.observe(acked - issued)


class Tally:
    """The per-event metrics of one batch in plain ints; `flush()` adds them to the metrics,
    once (a new Tally for each batch)."""

    __slots__ = ("commands", "dead_letters", "events", "handling", "latencies", "risks",
                 "verdicts")

    def __init__(self) -> None:
        self.events: dict[str, int] = {}
        self.verdicts: dict[str, int] = {}
        self.dead_letters: dict[str, int] = {}
        self.handling: dict[str, int] = {}
        self.commands = 0
        self.latencies: list[float] = []
        self.risks: list[float] = []

    def decided(self, event_type: str, seconds: float, decisions: list[dict]) -> None:
        self.events[event_type] = self.events.get(event_type, 0) + 1
        self.latencies.append(seconds)
        for d in decisions:
            self.verdicts[d["verdict"]] = self.verdicts.get(d["verdict"], 0) + 1
            self.risks.append(d["risk"])
            self.commands += (d["command"] is not None) + len(d.get("cascade", ()))

    def handled(self, counts: dict[str, int]) -> None:
        for kind, n in counts.items():
            self.handling[kind] = self.handling.get(kind, 0) + n

    def dead_letter(self, reason: str) -> None:
        self.dead_letters[reason] = self.dead_letters.get(reason, 0) + 1

    def flush(self) -> None:
        for etype, n in self.events.items():
            events_of(etype).inc(n)
        for verdict, n in self.verdicts.items():
            decisions_of(verdict).inc(n)
        for reason, n in self.dead_letters.items():
            dead_letters_of(reason).inc(n)
        for kind, n in self.handling.items():
            HANDLING.labels(kind).inc(n)
        if self.commands:
            REVOCATIONS.inc(self.commands)
        if self.latencies:
            observe_many(LATENCY, self.latencies)
        if self.risks:
            observe_many(RISK, self.risks)


def observe_many(histogram: Histogram, values: list[float]) -> None:
    """histogram.observe(v) for every v, with one increment per bucket instead of a locked
    increment per value (prometheus-client has no bulk update: a batch of 500 observations
    cost about 1 us per event). It uses the client's own fields as Histogram.observe does
    (pinned version; tests/test_metrics.py checks it against observe)."""
    bounds = histogram._upper_bounds
    per_bucket = Tallies(bisect_left(bounds, v) for v in values)  # observe: first v <= bound
    for i, n in per_bucket.items():
        histogram._buckets[i].inc(n)
    histogram._sum.inc(sum(values))


def exposition() -> bytes:
    return generate_latest(REGISTRY)
