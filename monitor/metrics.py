"""Prometheus metrics of the monitor (prometheus-client). The stream layer and replay update
them; the worker serves them at /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

EVENTS = Counter("intentwatch_events_total", "Events received, by type",
                 ["type"], registry=REGISTRY)
DECISIONS = Counter("intentwatch_decisions_total", "Decisions, by verdict",
                    ["verdict"], registry=REGISTRY)
REVOCATIONS = Counter("intentwatch_revoke_commands_total", "Revoke commands issued",
                      registry=REGISTRY)
DEAD_LETTERS = Counter("intentwatch_dead_letters_total",
                       "Records that broke the contract, by reason", ["reason"],
                       registry=REGISTRY)
LATENCY = Histogram("intentwatch_decision_latency_seconds",
                    "Time to decide one event inside the worker",
                    buckets=(1e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 5e-2, 0.1),
                    registry=REGISTRY)


def observe(decisions: list[dict]) -> None:
    for d in decisions:
        DECISIONS.labels(d["verdict"]).inc()
        REVOCATIONS.inc((d["command"] is not None) + len(d.get("cascade", ())))


def exposition() -> bytes:
    return generate_latest(REGISTRY)
