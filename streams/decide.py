"""POST /v1/decide: the inline decision a gateway asks for before it runs a tool call.

The body is a proposed `agent.action` (phase "requested"); the answer is `Engine.assess()` on
the task's current state plus `decision`: "allow" or "deny" ("deny" exactly when the stream
would revoke). Nothing changes: no task state, no learning, no revoke command.

Authentication: `Authorization: Bearer <token>` must equal `Settings.decide_token`
(hmac.compare_digest). With no token configured every request is refused (401). The token is
never logged.

Routing: task state lives in the partitioned `tasks` table, so only the worker that holds the
task's partition as an *active* partition has its current state. A worker answers a request
itself when the partition of the task id in the table's changelog topic is active here
(and no rebalance or table recovery is under way). Otherwise it looks the owner up with Faust's
router (`app.router.key_store("tasks", task_id)`: the partition assignor's map of changelog
partitions to worker URLs) and forwards the request there once, body and token included, with
the `X-Intentwatch-Routed` header set; a forwarded request is never forwarded again (the
owner answers 503 if the assignment moved meanwhile). Faust's own `@app.table_route` and
`router.route_req` cannot be used here: the key is in the JSON body, and `route_req` forwards
the method and headers but not the body.

Fail-closed mode (`Settings.fail_closed`): where this worker would answer 503 because it is
rebalancing, recovering its tables or has no owner for the task yet, a side-effecting action
(per the catalog) is denied instead (200, reason `state_recovering`); read-only ones still get
503 (docs/event-time.md).

Status codes: 200 decided; 400 bad JSON or a body that breaks the contract (with the reason);
401 missing or wrong token; 503 (with Retry-After) while partitions move or the owner cannot be
reached.
"""

from __future__ import annotations

import hmac
import logging
import os
from time import perf_counter

import aiohttp
import orjson
from faust.web import View
from prometheus_client import Histogram
from yarl import URL

from monitor import metrics
from monitor.contracts import ContractError, decode
from monitor.detectors import finding
from monitor.detectors.base import CERTAIN
from monitor.policy import REVOKE

from .probes import not_ready_reason

log = logging.getLogger("intentwatch.decide")

DECIDE_PATH = "/v1/decide"
NOOP_PATH = "/v1/noop"
ROUTED_HEADER = "X-Intentwatch-Routed"  # set on a request one worker forwarded to the owner
NODE_HEADER = "X-Intentwatch-Node"      # canonical URL of the worker that decided
BENCH_NOOP_ENV = "INTENTWATCH_BENCH_NOOP"
FORWARD_TIMEOUT = 5.0
RETRY_AFTER = "1"

INLINE_LATENCY = Histogram(
    "intentwatch_inline_decision_seconds",
    "Time a worker takes to answer POST /v1/decide for a task it owns (auth, parse, assess, "
    "encode); forwarded requests are counted once, by the owner",
    buckets=(5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.5),
    registry=metrics.REGISTRY)


class Unavailable(Exception):
    """The task's partition has no owner that can answer now (rebalance, recovery, no route)."""


def authorized(header: str | None, token: str) -> bool:
    """True when `header` is `Bearer <token>`. An unset token authorizes nothing."""
    if not token or not header:
        return False
    scheme, _, presented = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    # surrogateescape: aiohttp hands over header bytes that are not UTF-8 as lone surrogates,
    # which a plain encode() refuses (a 500 instead of a 401)
    return hmac.compare_digest(presented.strip().encode("utf-8", "surrogateescape"),
                               token.encode("utf-8", "surrogateescape"))


def parse_proposal(raw: bytes | None, max_bytes: int) -> dict:
    """Request body -> a validated proposed action, or ContractError."""
    event = decode(raw, max_bytes)
    if event["type"] != "agent.action":
        raise ContractError("not_an_action",
                            f"only agent.action events can be decided, not {event['type']!r}")
    if event["phase"] != "requested":
        raise ContractError("not_a_request",
                            "only a proposed action (phase 'requested') can be decided")
    return event


def with_decision(assessment: dict) -> dict:
    return {**assessment, "decision": "allow" if assessment["allowed"] else "deny"}


def recovering_denial(action: dict, why: str) -> dict:
    """Fail-closed mode's answer for a side effect while the task's state is not complete here
    (rebalance, table recovery, no owner yet): deny rather than decide on partial state.
    Read-only actions still get 503 (undecided: the caller retries or applies its own
    policy)."""
    reason = finding("engine", "state_recovering", CERTAIN,
                     f"fail-closed: the task's state is not available ({why})")
    return with_decision({"v": 1, "type": "inline.decision", "task_id": action["task_id"],
                          "event_id": action.get("event_id"), "tool": action["tool"],
                          "allowed": False, "verdict": REVOKE, "risk": CERTAIN,
                          "reasons": [reason]})


def _same_node(a: URL, b: URL) -> bool:
    return (a.host, a.port) == (b.host, b.port)


class InlineDecider:
    """Request handling of POST /v1/decide, independent of the View plumbing."""

    def __init__(self, app, engine, tasks, settings):
        self.app, self.engine, self.tasks = app, engine, tasks
        self.token = settings.decide_token
        self.max_bytes = settings.max_event_bytes
        self.fail_closed = settings.fail_closed

    # -- routing -----------------------------------------------------------------------------
    def owner(self, task_id: str) -> URL | None:
        """None when this worker holds the task's partition, else the owner's URL."""
        app = self.app
        # (Not only app.in_recovery: Faust leaves it unset during a start's recovery; the
        # readiness probe's flags cover the whole span until the active tables are recovered.)
        not_ready = not_ready_reason(app)
        if not_ready:
            raise Unavailable(f"partitions are being reassigned ({not_ready})")
        key = task_id.encode()  # the table's key: task id as raw bytes (see JsonStore)
        topic = self.tasks.changelog_topic.get_topic_name()
        try:
            tp = app.producer.key_partition(topic, key)
            if app.assignor.is_active(tp):
                return None
            url = app.router.key_store(self.tasks.name, key)
        except KeyError:
            raise Unavailable("no worker owns the task's partition yet") from None
        except (TypeError, AssertionError):  # no metadata for the changelog topic yet
            raise Unavailable("partition metadata not loaded yet") from None
        if _same_node(url, URL(str(app.conf.canonical_url))):
            # The assignment names this worker but the partition is not active here: a stale
            # map, or several workers advertising the same canonical URL.
            raise Unavailable("routing metadata disagrees with this worker's assignment")
        return url

    # -- requests ----------------------------------------------------------------------------
    async def handle(self, web, request):
        started = perf_counter()
        if not authorized(request.headers.get("Authorization"), self.token):
            return _error(web, 401, "unauthorized", "missing or wrong bearer token",
                          {"WWW-Authenticate": 'Bearer realm="intentwatch"'})
        length = request.content_length
        if length is not None and length > self.max_bytes:
            return _error(web, 400, "oversize",
                          f"{length} bytes is over the limit of {self.max_bytes}")
        raw = await request.read()
        try:
            action = parse_proposal(raw, self.max_bytes)
        except ContractError as exc:
            return _error(web, 400, exc.code, exc.message)
        try:
            url = self.owner(action["task_id"])
        except Unavailable as exc:
            if self.fail_closed and self.engine.catalog.get(action["tool"]).side_effecting:
                return web.json(recovering_denial(action, str(exc)))
            return _unavailable(web, str(exc))
        if url is not None:
            if request.headers.get(ROUTED_HEADER):
                return _unavailable(web, "the task's partition moved while the request was "
                                         "routed")
            return await self.forward(web, request, url, raw)
        body = orjson.dumps(with_decision(self.engine.assess(action)))
        INLINE_LATENCY.observe(perf_counter() - started)
        return web.bytes(body, content_type="application/json",
                         headers={NODE_HEADER: str(self.app.conf.canonical_url)})

    async def forward(self, web, request, url: URL, raw: bytes):
        target = url.with_path(DECIDE_PATH)
        headers = {"Authorization": request.headers["Authorization"],
                   "Content-Type": "application/json", ROUTED_HEADER: "1"}
        try:
            async with self.app.http_client.post(
                    str(target), data=raw, headers=headers,
                    timeout=aiohttp.ClientTimeout(total=FORWARD_TIMEOUT)) as resp:
                body = await resp.read()
                keep = {k: resp.headers[k] for k in (NODE_HEADER, "Retry-After",
                                                     "WWW-Authenticate") if k in resp.headers}
                return web.bytes(body, content_type=resp.content_type, status=resp.status,
                                 headers=keep)
        except (TimeoutError, aiohttp.ClientError) as exc:
            log.warning("decide: owner %s of the task's partition did not answer: %s",
                        target, type(exc).__name__)
            return _unavailable(web, "the worker that owns the task did not answer")


def _error(web, status: int, code: str, reason: str, headers: dict | None = None):
    return web.bytes(orjson.dumps({"error": code, "reason": reason}),
                     content_type="application/json", status=status, headers=headers)


def _unavailable(web, reason: str):
    return _error(web, 503, "unavailable", reason, {"Retry-After": RETRY_AFTER})


def register_decide_view(app, engine, tasks, settings) -> InlineDecider:
    """Add POST /v1/decide (and, for the latency benchmark only, POST /v1/noop) to the
    worker's web server. `tasks` is the Faust table the engine's store wraps."""
    decider = InlineDecider(app, engine, tasks, settings)

    class DecideView(View):
        async def post(self, request):
            return await decider.handle(self.web, request)

    app.page(DECIDE_PATH, name="intentwatch_decide")(DecideView)

    if os.environ.get(BENCH_NOOP_ENV) == "1":
        class NoopView(View):
            """Empty handler: the web server's own cost, baseline of benchmarks.decide_latency."""

            async def post(self, request):
                return self.web.bytes(b"{}", content_type="application/json")

        app.page(NOOP_PATH, name="intentwatch_bench_noop")(NoopView)
    return decider
