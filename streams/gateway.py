"""`intentwatch gateway`: a reference tool gateway and credential broker.

The gateway stands between agents and their tools:

- `start_task` issues a short-lived credential for a task and publishes the task's intent and
  `credential.issued`. The random token goes back to the caller only; the gateway keeps its
  sha256, and events and logs carry the credential id, never the token.
- `call` resolves the token to its credential and refuses at once, without a network round
  trip, a credential that is unknown, revoked, expired or issued to another task. Before a
  side-effecting call (per the catalog) it asks the worker's POST /v1/decide and refuses on
  "deny"; when the endpoint cannot answer it refuses too (fail closed) unless told to fail
  open. A call that runs is published as an agent.action request (before it runs) and its
  completion. A refused call runs nothing and publishes nothing; it is counted and logged.
- `end_task` revokes the task's credentials and publishes `credential.revoked` and `task.end`.
- In the background it consumes the revocations topic in its own consumer group, verifies
  each command (trusted keys: INTENTWATCH_VERIFY_KEYS), marks the named credentials revoked at
  once and acks on the acks topic in the enforcer's format (`streams.enforcer`).

State (credentials, tasks) lives in memory: a restarted gateway forgets every token.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import secrets
import signal
import sys
import time
import uuid
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Self

import aiohttp
import orjson
from aiohttp import web
from aiokafka import AIOKafkaProducer
from prometheus_client import Counter

from monitor.catalog import Catalog
from monitor.config import Settings
from monitor.contracts import validate
from monitor.metrics import REGISTRY

from .enforcer import default_enforcer_name, run_enforcer, verifier_from_settings
from .kafka_security import kafka_client_options
from .produce import ensure_topics

log = logging.getLogger("intentwatch.gateway")

ALLOWED = "allowed"
UNKNOWN, WRONG_TASK, REVOKED, EXPIRED = (
    "credential_unknown", "credential_wrong_task", "credential_revoked", "credential_expired")
NO_FEED, NO_TOOL, DENIED, UNAVAILABLE, TOOL_ERROR = (
    "revocations_unavailable", "tool_unknown", "denied_by_monitor", "decide_unavailable",
    "tool_error")
OUTCOMES = (ALLOWED, UNKNOWN, WRONG_TASK, REVOKED, EXPIRED, NO_FEED, NO_TOOL, DENIED,
            UNAVAILABLE, TOOL_ERROR)
CALLS = Counter("intentwatch_gateway_calls_total", "Tool calls through the gateway, by outcome",
                ["outcome"], registry=REGISTRY)
for _outcome in OUTCOMES:
    CALLS.labels(_outcome)


async def echo(args: dict) -> str:
    """The reference tool: answers with its arguments."""
    return orjson.dumps(args).decode()


def token_hash(token: str) -> str:
    # (a bearer token from a header may hold lone surrogates: bytes that are not UTF-8)
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


@dataclass
class Credential:
    credential_id: str
    task_id: str
    workload_id: str
    expires_at: float
    revoked_at: float | None = None


class Gateway:
    """`tools` maps a tool name to `async fn(args) -> str`; None: every tool echoes.
    `decide_url`/`decide_token`: the worker's POST /v1/decide. Use as an async context manager
    (or `start()`/`stop()`)."""

    def __init__(self, settings: Settings, *, decide_url: str, decide_token: str,
                 tools: dict | None = None, ttl: float = 900.0, fail_closed: bool = True,
                 decide_timeout: float = 2.0, group_id: str | None = None,
                 name: str | None = None):
        self.settings = settings
        self.catalog = Catalog.load(settings.catalog) if settings.catalog else Catalog()
        self.verifier = verifier_from_settings(settings)  # ValueError without trusted keys
        self.decide_url, self._decide_token = decide_url, decide_token
        self.tools, self.ttl, self.fail_closed = tools, ttl, fail_closed
        self.decide_timeout = decide_timeout
        self.name = name or f"gateway:{default_enforcer_name()}"
        self.group_id = group_id or f"{settings.app_id}-{self.name.replace(':', '-')}"
        self.credentials: dict[str, Credential] = {}  # credential id -> credential
        self._by_hash: dict[str, str] = {}            # sha256 of token -> credential id
        self.tasks: dict[str, dict] = {}              # task id -> {agent_id, workload_id, ...}
        self._stop = asyncio.Event()
        self._producer: AIOKafkaProducer | None = None
        self._http: aiohttp.ClientSession | None = None
        self._loop_task: asyncio.Task | None = None

    async def start(self) -> None:
        s = self.settings
        await ensure_topics(s, [s.topic_intents, s.topic_actions, s.topic_revocations,
                                s.topic_acks])
        self._producer = AIOKafkaProducer(**kafka_client_options(s),
                                          enable_idempotence=True)
        await self._producer.start()
        self._http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.decide_timeout))
        self._loop_task = asyncio.create_task(run_enforcer(
            s, self.verifier, [_Revoker(self)], stop=self._stop, group_id=self.group_id,
            enforcer=self.name))

    async def stop(self) -> None:
        self._stop.set()
        if self._loop_task is not None:
            try:
                await self._loop_task
            except Exception:
                log.exception("the revocation loop failed")
        if self._http is not None:
            await self._http.close()
        if self._producer is not None:
            await self._producer.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    # -- tasks -------------------------------------------------------------------------------
    async def start_task(self, *, agent_id: str, workload_id: str, goal: str, tools: list[str],
                         task_id: str | None = None, ttl: float | None = None,
                         **intent) -> dict:
        """Issue a credential and declare the task. `intent` takes the optional fields of
        task.intent (scopes, max_actions, max_side_effects, parent_task_id,
        max_delegation_depth)."""
        allowed = {"scopes", "max_actions", "max_side_effects", "parent_task_id",
                   "max_delegation_depth"}
        if set(intent) - allowed:
            raise ValueError(f"unknown intent fields: {sorted(set(intent) - allowed)}")
        task_id = task_id or f"task-{uuid.uuid4().hex}"
        if task_id in self.tasks:
            raise ValueError(f"task {task_id!r} exists")
        now = time.time()
        expires_at = now + (ttl or self.ttl)
        cred = Credential(f"cred-{secrets.token_hex(12)}", task_id, workload_id, expires_at)
        declared = validate(dict(  # ContractError (a ValueError) on a bad field
            {k: v for k, v in intent.items() if v is not None}, v=1, type="task.intent",
            task_id=task_id, agent_id=agent_id, workload_id=workload_id, goal=goal,
            tools=tools, expires_at=expires_at, credentials=[cred.credential_id],
            event_time=now))
        token = secrets.token_urlsafe(32)
        self.credentials[cred.credential_id] = cred
        self._by_hash[token_hash(token)] = cred.credential_id
        self.tasks[task_id] = {"agent_id": agent_id, "workload_id": workload_id,
                               "credentials": [cred.credential_id]}
        await self._publish(declared)
        await self._publish({"type": "credential.issued", "credential_id": cred.credential_id,
                             "task_id": task_id, "workload_id": workload_id,
                             "expires_at": expires_at, "event_time": now,
                             "event_id": _event_id()})
        log.info("task %s started, credential %s until %.0f", task_id, cred.credential_id,
                 expires_at)
        return {"task_id": task_id, "credential_id": cred.credential_id, "token": token,
                "expires_at": expires_at}

    async def end_task(self, task_id: str, status: str = "completed") -> dict:
        if task_id not in self.tasks:
            raise KeyError(task_id)
        now = time.time()
        for cid in self.revoke(self.tasks[task_id]["credentials"], "task_ended"):
            await self._publish({"type": "credential.revoked", "credential_id": cid,
                                 "task_id": task_id, "event_time": now, "reason": "task_ended",
                                 "event_id": _event_id()})
        await self._publish({"type": "task.end", "task_id": task_id, "event_time": now,
                             "status": status, "event_id": _event_id()})
        return {"task_id": task_id, "ended_at": now}

    def revoke(self, credential_ids, reason: str) -> list[str]:
        """Mark the credentials this gateway issued revoked; return those newly revoked."""
        now, done = time.time(), []
        for cid in credential_ids:
            cred = self.credentials.get(cid)
            if cred is not None and cred.revoked_at is None:
                cred.revoked_at = now
                done.append(cid)
        if done:
            log.info("revoked %s: %s", done, reason)
        return done

    def resolve(self, token: str) -> Credential | None:
        cid = self._by_hash.get(token_hash(token)) if token else None
        return self.credentials.get(cid) if cid else None

    # -- calls -------------------------------------------------------------------------------
    async def call(self, task_id: str, token: str, tool: str, args: dict) -> dict:
        """Run one tool call if the credential, and for a side effect the monitor, allow it.
        Returns {allowed, reason, reasons, result, call_id}."""
        cred = self.resolve(token)
        now = time.time()
        if cred is None:
            return self._refuse(task_id, tool, UNKNOWN)
        if cred.task_id != task_id:
            return self._refuse(task_id, tool, WRONG_TASK, cred=cred)
        if cred.revoked_at is not None:
            return self._refuse(task_id, tool, REVOKED, cred=cred)
        if now > cred.expires_at:
            return self._refuse(task_id, tool, EXPIRED, cred=cred)
        if self._loop_task is None or self._loop_task.done():
            # without the revocation feed a revoked credential would look valid: refuse
            return self._refuse(task_id, tool, NO_FEED, cred=cred)
        run = echo if self.tools is None else self.tools.get(tool)
        if run is None:
            return self._refuse(task_id, tool, NO_TOOL, cred=cred)

        call_id = uuid.uuid4().hex
        request = {"type": "agent.action", "event_id": _event_id(), "task_id": task_id,
                   "agent_id": self.tasks[task_id]["agent_id"], "event_time": now,
                   "tool": tool, "args": args, "credential_id": cred.credential_id,
                   "workload_id": cred.workload_id, "phase": "requested", "call_id": call_id}
        if self.catalog.get(tool).side_effecting:
            refusal = await self._ask_monitor(request)
            if refusal is not None:
                return self._refuse(task_id, tool, *refusal, cred=cred)
        await self._publish(request)
        if cred.revoked_at is not None:  # revoked while we waited for the monitor or the bus
            return self._refuse(task_id, tool, REVOKED, cred=cred)
        try:
            result, status, reason = await run(args), "ok", None
        except Exception as exc:  # a failing tool is a completed call with status error
            log.warning("tool %s of task %s failed", tool, task_id, exc_info=True)
            result, status, reason = f"{type(exc).__name__}: {exc}", "error", TOOL_ERROR
        await self._publish(dict(request, event_id=_event_id(), event_time=time.time(),
                                 phase="completed", status=status, result=str(result)))
        CALLS.labels(reason or ALLOWED).inc()
        return {"allowed": True, "reason": reason, "reasons": [], "result": str(result),
                "call_id": call_id}

    async def _ask_monitor(self, request: dict) -> tuple[str, list] | None:
        """None to go ahead, else (reason, the monitor's reasons). Retries 503 (partitions
        moving) until `decide_timeout`; a 4xx is always a refusal (misconfiguration)."""
        body = orjson.dumps(dict(request, v=1))
        headers = {"Authorization": f"Bearer {self._decide_token}",
                   "Content-Type": "application/json"}
        deadline = time.monotonic() + self.decide_timeout
        detail = ""
        while True:
            try:
                async with self._http.post(self.decide_url, data=body, headers=headers) as r:
                    if r.status == 200:
                        answer = await r.json(content_type=None)
                        answer = answer if isinstance(answer, dict) else {}
                        if answer.get("decision") == "allow":
                            return None
                        return DENIED, answer.get("reasons", [])  # anything else denies
                    detail = f"HTTP {r.status}"
                    if r.status < 500:  # bad token or request: never fail open on that
                        return UNAVAILABLE, [{"code": "decide_refused", "message": detail}]
            except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
                detail = type(exc).__name__
            if time.monotonic() + 0.1 >= deadline:
                break
            await asyncio.sleep(0.1)
        log.warning("decide endpoint did not answer (%s); failing %s", detail,
                    "closed" if self.fail_closed else "open")
        if not self.fail_closed:
            return None
        return UNAVAILABLE, [{"code": "decide_unavailable", "message": detail}]

    def _refuse(self, task_id: str, tool: str, reason: str, reasons: list | None = None,
                cred: Credential | None = None) -> dict:
        CALLS.labels(reason).inc()
        log.info("refused %s for task %s (credential %s): %s", tool, task_id,
                 cred.credential_id if cred else "unknown", reason)
        return {"allowed": False, "reason": reason, "reasons": reasons or [], "result": None,
                "call_id": None}

    async def _publish(self, event: dict) -> None:
        event = {"v": 1, **event}
        await self._producer.send_and_wait(
            self.settings.topic_intents if event["type"] == "task.intent"
            else self.settings.topic_actions, orjson.dumps(event), key=event["task_id"].encode())


class _Revoker:
    """The enforcer adapter that applies a verified revoke command to this gateway."""

    name = "gateway"

    def __init__(self, gateway: Gateway):
        self.gateway = gateway

    async def enforce(self, command: dict):
        ids = command["credential_ids"]
        if not ids:  # scope "task": every credential of the task
            ids = self.gateway.tasks.get(command.get("task_id"), {}).get("credentials", [])
        done = self.gateway.revoke(ids, f"command {command['command_id']}: "
                                        f"{command.get('reason')}")
        return SimpleNamespace(ok=True, detail=f"revoked {done}" if done else
                               "no live credential of this gateway")


def _event_id() -> str:
    return uuid.uuid4().hex


# -- HTTP server and command line ---------------------------------------------------------------
def build_web_app(gateway: Gateway) -> web.Application:
    """POST /tasks (start), POST /tasks/{id}/calls and POST /tasks/{id}/end (both with
    `Authorization: Bearer <the task's token>`)."""

    async def body_of(request) -> dict:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            raise web.HTTPBadRequest(text="body must be JSON") from None
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text="body must be a JSON object")
        return body

    def token_of(request) -> str:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise web.HTTPUnauthorized(text="missing bearer token")
        return token.strip()

    async def start(request):
        try:
            return web.json_response(await gateway.start_task(**await body_of(request)),
                                     status=201, dumps=_dumps)
        except (TypeError, ValueError) as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None

    async def calls(request):
        token, body = token_of(request), await body_of(request)
        if not isinstance(body.get("tool"), str) or not isinstance(body.get("args", {}), dict):
            raise web.HTTPBadRequest(text="need tool (string) and args (object)")
        answer = await gateway.call(request.match_info["task_id"], token, body["tool"],
                                    body.get("args", {}))
        return web.json_response(answer, status=200 if answer["allowed"] else 403, dumps=_dumps)

    async def end(request):
        task_id, cred = request.match_info["task_id"], gateway.resolve(token_of(request))
        if cred is None or cred.task_id != task_id:
            raise web.HTTPForbidden(text="not this task's token")
        return web.json_response(await gateway.end_task(task_id), dumps=_dumps)

    app = web.Application()
    app.router.add_post("/tasks", start)
    app.router.add_post("/tasks/{task_id}/calls", calls)
    app.router.add_post("/tasks/{task_id}/end", end)
    return app


def _dumps(obj) -> str:
    return orjson.dumps(obj).decode()


def add_gateway_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("gateway", help="reference tool gateway and credential broker (HTTP on "
                                       "INTENTWATCH_WEB_BIND)")
    p.add_argument("--port", type=int, default=8070, help="HTTP port (default 8070)")
    p.add_argument("--decide-url", help="the worker's POST /v1/decide (default "
                                        "http://127.0.0.1:<INTENTWATCH_WEB_PORT>/v1/decide)")
    p.add_argument("--decide-token", help="its bearer token (default $INTENTWATCH_DECIDE_TOKEN, "
                                          "preferred: a command line is visible to other users)")
    p.add_argument("--ttl", type=float, default=900.0, help="credential lifetime, seconds")
    p.add_argument("--decide-timeout", type=float, default=2.0, metavar="SECONDS")
    p.add_argument("--fail-open", action="store_true",
                   help="run side effects when /v1/decide cannot answer (default: refuse)")
    p.add_argument("--group", help="consumer group of revocations (default: per process)")
    p.add_argument("--name", help="name in the acks (default gateway:host:pid)")
    p.add_argument("--loglevel", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=cmd_gateway)
    return p


def cmd_gateway(args, settings: Settings) -> int:
    logging.basicConfig(level=args.loglevel.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        gateway = Gateway(
            settings, decide_url=args.decide_url or
            f"http://127.0.0.1:{settings.web_port}/v1/decide",
            decide_token=args.decide_token or settings.decide_token, ttl=args.ttl,
            fail_closed=not args.fail_open, decide_timeout=args.decide_timeout,
            group_id=args.group, name=args.name)
    except (ValueError, TypeError) as exc:  # no or bad trusted keys, bad catalog
        print(f"intentwatch: {exc}", file=sys.stderr)
        return 2

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with gateway:
            runner = web.AppRunner(build_web_app(gateway))
            await runner.setup()
            try:
                await web.TCPSite(runner, settings.web_bind, args.port).start()
                log.info("gateway on http://%s:%d, decide %s", settings.web_bind, args.port,
                         gateway.decide_url)
                await stop.wait()
            finally:
                await runner.cleanup()

    asyncio.run(main())
    return 0
