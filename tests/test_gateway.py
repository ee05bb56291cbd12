"""`intentwatch gateway` on the real broker, with a live worker: credentials, inline decisions
through POST /v1/decide, and revocations from the stream applied and acked."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import orjson
import pytest

from streams import local
from streams.gateway import Gateway
from streams.produce import produce

from .conftest import SAMPLE_CATALOG
from .metrics_text import value

pytestmark = pytest.mark.kafka

DECIDE_TOKEN = "t0k"
MAIL = {"agent_id": "mail-agent", "workload_id": "spiffe://example.org/agent/mail",
        "goal": "Summarise my inbox and reply to Bob", "tools": ["read_inbox", "send_email"]}


async def first(bootstrap: str, topic: str, pred, timeout: float = 60.0) -> dict:
    """The first record of `topic` (as JSON) that satisfies `pred`."""
    found = []

    def until(records):
        found[:] = [v for v in local.values(records) if pred(v)]
        return bool(found)

    await local.read_topics(bootstrap, [topic], until, timeout)
    assert found, f"nothing on {topic} matched"
    return found[0]


def inline_decisions(worker) -> float:
    """How many POST /v1/decide requests the worker has answered."""
    return value(worker.get("/metrics").decode(), "intentwatch_inline_decision_seconds_count")


def test_gateway_decides_inline_and_follows_stream_revocations(start_worker, signing_keys,
                                                              caplog):
    caplog.set_level(logging.DEBUG)
    worker = start_worker(decide_token=DECIDE_TOKEN)
    s = dataclasses.replace(worker.settings, catalog=str(SAMPLE_CATALOG), fast_rebalance=True,
                            verify_keys=str(signing_keys[1]), app_id=f"gw-{uuid.uuid4().hex}")
    decide_url = f"http://127.0.0.1:{worker.web_port}/v1/decide"

    async def scenario() -> tuple[dict, list[str], str]:
        async with Gateway(s, decide_url=decide_url, decide_token=DECIDE_TOKEN,
                           decide_timeout=30.0) as gw:
            task = await gw.start_task(**MAIL)
            tid, cid, token = task["task_id"], task["credential_id"], task["token"]
            # Let the worker take in the intent first, so its answers rest on it.
            await first(worker.bootstrap, s.topic_decisions,
                        lambda d: d["task_id"] == tid and d["event_type"] == "task.intent")

            read = await gw.call(tid, token, "read_inbox", {"folder": "inbox"})
            assert read["allowed"] and read["result"] == '{"folder":"inbox"}', read

            # An undeclared side effect with the task's own token: the monitor denies it.
            money = await gw.call(tid, token, "send_money", {"recipient": "IBAN-X", "amount": 5})
            assert not money["allowed"] and money["reason"] == "denied_by_monitor", money
            assert "tool_not_declared" in {r["code"] for r in money["reasons"]}

            # Unknown tokens, another task's token, an expired one: refused by the gateway.
            other = await gw.start_task(**MAIL)
            short = await gw.start_task(**MAIL, ttl=0.01)
            await asyncio.sleep(0.05)
            for task_id, tok, reason in [(tid, "not-a-token", "credential_unknown"),
                                         (tid, other["token"], "credential_wrong_task"),
                                         (short["task_id"], short["token"], "credential_expired")]:
                answer = await gw.call(task_id, tok, "read_inbox", {})
                assert (answer["allowed"], answer["reason"]) == (False, reason)

            # The stream revokes the task: an action with a credential not issued to it.
            await produce([(0, orjson.dumps({
                "v": 1, "type": "agent.action", "event_id": uuid.uuid4().hex, "task_id": tid,
                "agent_id": MAIL["agent_id"], "event_time": time.time(), "tool": "read_inbox",
                "args": {}, "credential_id": "cred-stolen-1", "phase": "requested"}))], s)
            deadline = time.monotonic() + 60
            while gw.credentials[cid].revoked_at is None:
                assert time.monotonic() < deadline, "the revocation never reached the gateway"
                await asyncio.sleep(0.05)

            # From now on the token is refused at once, a declared read as well as a declared
            # side effect, and without asking the monitor.
            asked = inline_decisions(worker)
            for tool in ("read_inbox", "send_email"):
                answer = await gw.call(tid, token, tool, {"to": "bob@example.com"})
                assert (answer["allowed"], answer["reason"]) == (False, "credential_revoked")
            assert inline_decisions(worker) == asked

            # Another task is untouched: its declared side effect is allowed by the monitor.
            sent = await gw.call(other["task_id"], other["token"], "send_email",
                                 {"to": "bob@example.com", "body": "summary"})
            assert sent["allowed"], sent
            await gw.end_task(other["task_id"])
            assert gw.credentials[other["credential_id"]].revoked_at is not None
            ack = await first(worker.bootstrap, s.topic_acks,
                              lambda a: a["task_id"] == tid and a["status"] == "enforced")
            return ack, [task["token"], other["token"], short["token"]], cid

    ack, tokens, cid = asyncio.run(scenario())
    assert cid in ack["credential_ids"] and "cred-stolen-1" in ack["credential_ids"]
    assert ack["adapters"][0]["adapter"] == "gateway" and ack["adapters"][0]["ok"]
    assert ack["enforcer"].startswith("gateway:") and ack["acked_at"] >= ack["issued_at"]

    # The monitor measured the ack.
    deadline = time.monotonic() + 30
    while 'intentwatch_revoke_acks_total{status="enforced"} 1.0' not in worker.get(
            "/metrics").decode():
        assert time.monotonic() < deadline, "the worker never counted the ack"
        time.sleep(0.2)
    # ... and the time from the offending event to it.
    assert "intentwatch_revoke_ack_seconds_count 1.0" in worker.get("/metrics").decode()

    # Tokens never left the gateway: not in any event, nor in its logs.
    records = asyncio.run(local.read_topics(
        worker.bootstrap, [s.topic_intents, s.topic_actions], lambda rs: False, timeout=3))
    events = local.values(records)
    assert {"task.intent", "credential.issued", "agent.action", "credential.revoked",
            "task.end"} <= {e["type"] for e in events}
    for tok in tokens:
        assert all(tok.encode() not in r.value for r in records)
        assert tok not in caplog.text


def test_gateway_command_serves_http_fails_closed_and_stops_on_sigterm(kafka, signing_keys,
                                                                      tmp_path):
    prefix = f"gwcli-{uuid.uuid4().hex[:8]}"
    port, closed = local.free_port(), local.free_port()
    env = local.worker_env(kafka, **{f"topic_{k}": f"{prefix}.{k}" for k in
                                     ("intents", "actions", "revocations", "acks")},
                           app_id=prefix, catalog=SAMPLE_CATALOG, fast_rebalance=1,
                           verify_keys=signing_keys[1], decide_token=DECIDE_TOKEN)
    log = tmp_path / "gateway.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "gateway", "--port", str(port),
             "--decide-url", f"http://127.0.0.1:{closed}/v1/decide", "--decide-timeout", "0.5"],
            env=env, cwd=str(local.ROOT), stdout=out, stderr=subprocess.STDOUT)

    def post(path: str, body: dict, token: str | None = None) -> tuple[int, dict | str]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", orjson.dumps(body),
                                     headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, orjson.loads(r.read())
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            return exc.code, orjson.loads(raw) if raw.startswith(b"{") else raw.decode()

    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                status, task = post("/tasks", MAIL)
                break
            except OSError:
                assert time.monotonic() < deadline, "the gateway did not come up"
                time.sleep(0.2)
        assert status == 201 and set(task) == {"task_id", "credential_id", "token",
                                               "expires_at"}
        calls, token = f"/tasks/{task['task_id']}/calls", task["token"]
        assert post(calls, {"tool": "read_inbox", "args": {}}, token)[0] == 200
        # No monitor to ask: a side effect is refused (fail closed).
        status, answer = post(calls, {"tool": "send_email", "args": {"to": "b@x.org"}}, token)
        assert (status, answer["reason"]) == (403, "decide_unavailable")
        assert post(calls, {"tool": "read_inbox", "args": {}})[0] == 401
        assert post(calls, {"tool": "read_inbox", "args": {}}, "wrong")[0] == 403
        assert post("/tasks", {"goal": "no tools"})[0] == 400
        assert post(f"/tasks/{task['task_id']}/end", {}, "wrong")[0] == 403
        assert post(f"/tasks/{task['task_id']}/end", {}, token)[0] == 200
        status, answer = post(calls, {"tool": "read_inbox", "args": {}}, token)
        assert (status, answer["reason"]) == (403, "credential_revoked")

        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()
    finally:
        local.stop_worker(proc)
    assert token not in log.read_text()
