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


ACK_SECONDS = Histogram("intentwatch_revoke_ack_seconds",
                        "From the offending event to the enforcement acknowledgement",
                        buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
                        registry=REGISTRY)
ACKS = Counter("intentwatch_revoke_acks_total", "Acknowledgements of revoke commands, by status",
               ["status"], registry=REGISTRY)


def observe_ack(ack: dict) -> None:
    """An enforcer's acknowledgement. Times are the offending event's time (the command's
    issued_at) and the enforcer's wall clock, so they are only as comparable as the clocks of
    the agent runtime and the enforcer."""
    status = ack.get("status")
    ACKS.labels(status if status in ("enforced", "rejected", "failed") else "other").inc()
    issued, acked = ack.get("issued_at"), ack.get("acked_at")
    if status == "enforced" and isinstance(issued, (int, float)) and \
            isinstance(acked, (int, float)) and acked >= issued:
        ACK_SECONDS.observe(acked - issued)


def observe(decisions: list[dict]) -> None:
    for d in decisions:
        DECISIONS.labels(d["verdict"]).inc()
        REVOCATIONS.inc((d["command"] is not None) + len(d.get("cascade", ())))


def exposition() -> bytes:
    return generate_latest(REGISTRY)
