"""The live dashboard on the worker's web server: GET /dashboard and its JSON endpoints.

- GET /dashboard: one self-contained page (inline CSS and vanilla JS, nothing fetched from
  elsewhere) that polls the endpoints below every 2 s;
- GET /api/tasks: the tasks this worker decided lately, the riskiest first (`?limit=`);
- GET /api/alerts: its recent alerts and revocations, the newest first;
- GET /api/tasks/{task_id}: one task's timeline (actions, decisions, reasons, evidence,
  revoke commands), 404 when this worker does not track it.

What it shows comes from the worker's `monitor.activity.ActivityRecorder`, so each worker shows
the partitions it owns. Task goals, tool names and evidence come from agents and may be hostile:
the page puts data into the DOM only as text (textContent), never as HTML, and its Content
Security Policy allows its own inline script and style only (by hash), so markup that slipped
in could not run a script or load anything.

Authentication: the JSON endpoints answer only a request with `Authorization: Bearer <token>`
equal to `Settings.dashboard_token` (constant-time compare, decide.authorized); with no token
configured they refuse every request (401). The page itself holds no data and is served to
anyone: it takes the token from the URL's fragment (#token=..., never sent to the server) or
from a form, keeps it in the tab's sessionStorage, and sends it on its fetches.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from importlib import resources

import orjson
from faust.web import View

from .decide import authorized

DASHBOARD_PATH = "/dashboard"
PAGE = resources.files("streams").joinpath("dashboard.html").read_text(encoding="utf-8")


def _csp(page: str) -> str:
    """The page's Content Security Policy: its one inline script and style by their hashes."""
    def digest(tag: str) -> str:
        body = re.search(rf"<{tag}>(.*?)</{tag}>", page, re.DOTALL).group(1)
        return "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"
    return (f"default-src 'none'; script-src {digest('script')}; style-src {digest('style')}; "
            "connect-src 'self'; img-src 'none'; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'")


PAGE_HEADERS = {"Content-Security-Policy": _csp(PAGE), "X-Content-Type-Options": "nosniff",
                "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
JSON_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


def _limit(request, default: int) -> int | None:
    raw = request.query.get("limit")
    if raw is None:
        return default
    try:  # (not str.isdigit: "²" is a digit that int() refuses, and so is a 5,000-digit one)
        value = int(raw)
    except ValueError:
        return default
    return value if value > 0 else default


def _partitions(app, topic: str) -> list[int]:
    """Partitions of `topic` this worker owns now (none before its first assignment)."""
    return sorted(tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topic)


def register_dashboard(app, recorder, settings) -> None:
    """Add the dashboard's page and JSON endpoints to the worker's web server; they show
    what `recorder` (a monitor.activity.ActivityRecorder the worker feeds) holds."""

    def json(web, body: dict, status: int = 200, headers: dict | None = None):
        return web.bytes(orjson.dumps(body), content_type="application/json", status=status,
                         headers={**JSON_HEADERS, **(headers or {})})

    def worker_info() -> dict:
        return {"app_id": settings.app_id, "url": str(app.conf.canonical_url), "now": time.time(),
                "partitions": _partitions(app, settings.topic_actions),
                "bounds": recorder.bounds(), "tracked": len(recorder)}

    class DashboardPage(View):
        async def get(self, request):
            return self.web.html(PAGE, headers=PAGE_HEADERS)  # (charset utf-8)

    class DataView(View):
        """A JSON endpoint: refuses (401) a request without the dashboard token."""

        async def dispatch(self, request):
            if not authorized(request.headers.get("Authorization"), settings.dashboard_token):
                return json(self.web, {"error": "unauthorized", "reason": "missing or wrong "
                                       "bearer token (INTENTWATCH_DASHBOARD_TOKEN)"}, 401,
                            {"WWW-Authenticate": 'Bearer realm="intentwatch"'})
            return await super().dispatch(request)

    class TasksView(DataView):
        async def get(self, request):
            return json(self.web, {"worker": worker_info(),
                                   "tasks": recorder.tasks(_limit(request, 100))})

    class AlertsView(DataView):
        async def get(self, request):
            return json(self.web, {"worker": worker_info(),
                                   "alerts": recorder.alerts(_limit(request, 100))})

    class TaskView(DataView):
        async def get(self, request, task_id: str):
            found = recorder.timeline(task_id)
            if found is None:
                return json(self.web, {"error": "unknown_task", "reason":
                                       "this worker has no recent decision of that task"}, 404)
            return json(self.web, found)

    app.page(DASHBOARD_PATH, name="intentwatch_dashboard")(DashboardPage)
    app.page("/api/tasks", name="intentwatch_api_tasks")(TasksView)
    app.page("/api/alerts", name="intentwatch_api_alerts")(AlertsView)
    app.page("/api/tasks/{task_id}", name="intentwatch_api_task")(TaskView)
