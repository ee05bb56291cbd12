"""GET /readyz: whether the worker can decide now, for readiness probes.

/healthz (streams.app) answers as soon as the web server runs: the process is alive. Ready
means more: the worker has joined its consumer group, been assigned its partitions and
recovered the task table of its active partitions from the changelog, and no rebalance is
under way. Until then, and during every later rebalance, it answers 503 with the reason, so a
Kubernetes rollout waits for each worker to hold its state before it moves on to the next,
and a Service sends it no traffic meanwhile (POST /v1/decide would answer 503 anyway).
"""

from __future__ import annotations

READY_PATH = "/readyz"


def not_ready_reason(app) -> str | None:
    """None when the worker is ready, else why not (Faust's own flags, read, never waited on:
    the probe must answer at once)."""
    if app.rebalancing:
        return "rebalancing"
    if app.in_recovery:
        return "recovering tables"
    if not app.tables.actives_ready:  # set when this generation's active tables recovered
        return "waiting for partitions"
    return None


def register_readiness_view(app, app_id: str) -> None:
    @app.page(READY_PATH)
    async def ready_view(web, request):
        reason = not_ready_reason(app)
        if reason is None:
            return web.json({"status": "ready", "app_id": app_id})
        return web.json({"status": "not ready", "reason": reason, "app_id": app_id},
                        status=503)
