"""Secrets never appear in logs, events, decision records, metrics or messages.

A real worker and a real gateway run over SASL_SSL (the secure broker) with known secrets:
the decide token, the dashboard token, the SASL password, the signing key, and the tokens
the gateway issues. After traffic that uses each of them (and refusals, dead letters, a
revoke command, a model snapshot), every record of every topic, both processes' debug logs,
/metrics, the HTTP answers, `intentwatch config show` and the error messages are searched
for each secret in its plain, base64 and hex forms. Nothing may match."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from monitor.config import Settings
from monitor.signing import load_private_key
from streams import local
from streams.kafka_security import kafka_client_options

from .conftest import SAMPLE_CATALOG, SAMPLE_TRACE
from .secure_broker import secure_kafka_fixture  # noqa: F401 (the secure_kafka fixture)

pytestmark = pytest.mark.kafka


def forms(secret: bytes) -> set[bytes]:
    """The secret as it could leak: plain, hex, base64 (standard and URL-safe, padded or
    not). Each is searched for as a substring."""
    encoded = {secret, secret.hex().encode()}
    for b64 in (base64.b64encode, base64.urlsafe_b64encode):
        encoded |= {b64(secret), b64(secret).rstrip(b"=")}
    return encoded


def key_secrets(pem_path) -> dict[str, bytes]:
    """The signing key: its PEM body lines, and its raw 32 bytes (whose forms are searched)."""
    pem = Path(pem_path).read_bytes()
    found = {f"signing key PEM line {i}": line for i, line in enumerate(pem.splitlines())
             if len(line) >= 20 and not line.startswith(b"-----")}
    found["signing key (raw)"] = load_private_key(str(pem_path)).private_bytes_raw()
    return found


class Haystack:
    """Named texts to search, and the secrets to look for."""

    def __init__(self):
        self.texts: list[tuple[str, bytes]] = []

    def add(self, where: str, text: bytes | str) -> None:
        self.texts.append((where, text.encode() if isinstance(text, str) else text))

    def leaks(self, secrets_: dict[str, bytes]) -> list[str]:
        found = []
        for name, secret in secrets_.items():
            for form in forms(secret):
                found += [f"{name} in {where}" for where, text in self.texts if form in text]
        return found


def http(method: str, url: str, body: dict | None = None, token: str | None = None):
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    data = orjson.dumps(body) if body is not None else None
    request = urllib.request.Request(url, data, headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=15) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


async def every_record(settings: Settings) -> list:
    """Every record of every topic on the broker but Kafka's own (__*)."""
    admin = AIOKafkaAdminClient(**kafka_client_options(settings))
    await admin.start()
    try:
        topics = [t for t in await admin.list_topics() if not t.startswith("__")]
    finally:
        await admin.close()
    # Until two reads in a row return no new record: every topic read to its end.
    seen = {"n": -1, "quiet": 0}

    def until(records):
        seen["quiet"] = seen["quiet"] + 1 if len(records) == seen["n"] else 0
        seen["n"] = len(records)
        return seen["quiet"] >= 10
    return await local.read_topics(settings.bootstrap, topics, until, 60, settings=settings)


def run_cli(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], env=env, check=False,
                          cwd=str(local.ROOT), capture_output=True, timeout=120)


def wait_for(pred, what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"{what} within {timeout:.0f} s"
        time.sleep(0.3)


def test_no_secret_in_logs_topics_metrics_answers_or_messages(secure_kafka, tmp_path,
                                                              signing_keys):
    bootstrap, security, _ = secure_kafka
    decide_token, dashboard_token = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    known = {"decide token": decide_token.encode(), "dashboard token": dashboard_token.encode(),
             "SASL password": security["sasl_password"].encode(),
             **key_secrets(signing_keys[0])}
    names = {f"topic_{k}": f"leak.{k}" for k in
             ("intents", "actions", "decisions", "alerts", "revocations", "dead_letters", "acks")}
    web_port, gateway_port = local.free_port(), local.free_port()
    env = local.worker_env(bootstrap, **names, **security, app_id="iw-leak", fast_rebalance=1,
                           catalog=SAMPLE_CATALOG, web_port=web_port, data_dir=tmp_path / "data",
                           signing_key=signing_keys[0], verify_keys=signing_keys[1],
                           decide_token=decide_token, dashboard_token=dashboard_token)
    settings = Settings(broker=f"kafka://{bootstrap}", **names, **security)
    worker_log, gateway_log = tmp_path / "worker.log", tmp_path / "gateway.log"
    hay = Haystack()
    worker = local.start_worker(env, worker_log, ("worker", "--loglevel", "debug"))
    gateway = None
    try:
        local.wait_healthy(web_port, worker, worker_log)
        base, worker_url = f"http://127.0.0.1:{gateway_port}", f"http://127.0.0.1:{web_port}"
        # The sample trace (a revoke command) and a broken line (a dead letter), over SASL_SSL.
        trace = tmp_path / "trace.jsonl"
        trace.write_bytes(SAMPLE_TRACE.read_bytes() + b"{broken\n")
        out = run_cli(["produce", str(trace)], env)
        assert out.returncode == 0, out.stderr
        hay.add("produce output", out.stdout + out.stderr)
        # The hijacked task's revoke command (signed with the key), before the gateway runs:
        # the gateway's events carry today's time, the trace's are older, and a task seen
        # after the event-time clock moved past its retention is refused, not decided.
        revocations = asyncio.run(local.read_topics(
            bootstrap, [names["topic_revocations"]], lambda rs: bool(rs), timeout=90,
            settings=settings))
        assert revocations, worker_log.read_text()[-5000:]

        # The worker's web server: decide and dashboard, right and wrong tokens.
        proposal = {"v": 1, "type": "agent.action", "task_id": "task-hijack-1",
                    "agent_id": "travel-agent", "tool": "send_money", "args": {},
                    "event_id": "leak-1", "event_time": 1767225700.0, "phase": "requested"}
        for who, tok in (("right", decide_token), ("wrong", decide_token[:-1] + "x"),
                         ("none", None)):
            hay.add(f"/v1/decide answer ({who} token)",
                    http("POST", f"{worker_url}/v1/decide", proposal, tok)[1])

        gateway = local.start_worker(env, gateway_log, (
            "gateway", "--port", str(gateway_port), "--loglevel", "debug", "--decide-url",
            f"http://127.0.0.1:{web_port}/v1/decide", "--decide-timeout", "30"))

        def gateway_up() -> bool:
            assert gateway.poll() is None, gateway_log.read_text()
            try:
                return http("GET", base + "/")[0] == 404   # no such route: but it answers
            except OSError:
                return False
        wait_for(gateway_up, "the gateway answers")

        # The gateway issues credential tokens, and uses the decide token for a side effect.
        issued = []
        for n in range(2):
            status, body = http("POST", base + "/tasks", {
                "agent_id": "mail-agent", "workload_id": "spiffe://example.org/agent/mail",
                "goal": "Summarise my inbox and reply to Bob", "tools": ["read_inbox",
                                                                         "send_email"]})
            assert status == 201, body
            issued.append(orjson.loads(body))
            hay.add(f"POST /tasks answer {n} (less its token)",
                    body.replace(issued[-1]["token"].encode(), b""))
        task, token = issued[0]["task_id"], issued[0]["token"]
        wait_for(lambda: http("GET", f"{worker_url}/api/tasks/{task}",
                              token=dashboard_token)[0] == 200, "the worker has the task")
        status, body = http("POST", f"{base}/tasks/{task}/calls", {"tool": "read_inbox",
                                                                  "args": {}}, token)
        assert status == 200, body
        hay.add("gateway answer to read_inbox", body)
        # An undeclared side effect: the gateway asks /v1/decide with the decide token.
        status, body = http("POST", f"{base}/tasks/{task}/calls", {"tool": "send_money",
                            "args": {"recipient": "IBAN-X", "amount": 5}}, token)
        assert (status, orjson.loads(body)["reason"]) == (403, "denied_by_monitor"), body
        hay.add("gateway answer to send_money", body)
        for path, bad in ((f"/tasks/{task}/calls", "not-a-token"),
                          (f"/tasks/{task}/calls", issued[1]["token"]),   # another task's
                          (f"/tasks/{task}/end", "not-a-token")):
            status, body = http("POST", base + path, {"tool": "read_inbox"}, bad)
            assert status in (401, 403)
            hay.add(f"gateway refusal {path}", body)
        assert http("POST", f"{base}/tasks/{task}/end", {}, token)[0] == 200

        # The gateway enforced the command it consumed (its credentials: none) and acked it.
        acks = asyncio.run(local.read_topics(bootstrap, [names["topic_acks"]], lambda rs: bool(rs),
                                             timeout=90, settings=settings))
        assert acks, gateway_log.read_text()[-5000:]
        for path in ("/api/tasks", "/api/alerts", "/api/tasks/task-hijack-1", f"/api/tasks/{task}"):
            for who, tok in (("right", dashboard_token), ("wrong", "x" + dashboard_token)):
                hay.add(f"{path} ({who} token)", http("GET", worker_url + path, token=tok)[1])
        for path in ("/metrics", "/healthz", "/readyz", "/dashboard"):
            hay.add(path, http("GET", worker_url + path)[1])
    finally:
        for proc in (gateway, worker):
            if proc is not None and proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)   # a clean stop: the last model snapshot
                proc.wait(60)

    known.update({f"gateway token {n}": t["token"].encode() for n, t in enumerate(issued)})
    records = asyncio.run(every_record(settings))
    by_topic: dict[str, int] = {}
    for r in records:
        by_topic[r.topic] = by_topic.get(r.topic, 0) + 1
        hay.add(f"record {r.topic}[{r.partition}]@{r.offset}",
                (r.key or b"") + b"\0" + (r.value or b"") + b"\0" +
                b"\0".join(k.encode() + b"=" + (v or b"") for k, v in r.headers))
    # The search covered what it should: every output, changelogs and the models' snapshots.
    for topic in (names["topic_decisions"], names["topic_alerts"], names["topic_revocations"],
                  names["topic_dead_letters"], names["topic_acks"], names["topic_intents"],
                  names["topic_actions"], "iw-leak-tasks-changelog", "iw-leak-registry-changelog",
                  "iw-leak-models"):
        assert by_topic.get(topic), f"no record of {topic} was searched: {by_topic}"
    assert any(b'"signature"' in r.value for r in records
               if r.topic == names["topic_revocations"])

    hay.add("worker log", worker_log.read_bytes())
    hay.add("gateway log", gateway_log.read_bytes())
    assert b"DEBUG" in worker_log.read_bytes() and b"DEBUG" in gateway_log.read_bytes()
    assert re.search(rb"task \S+ started, credential", gateway_log.read_bytes())

    # What prints settings or refuses them.
    shown = run_cli(["config", "show"], env)
    assert shown.returncode == 0 and b"sasl_password = <secret, set>" in shown.stdout
    hay.add("config show", shown.stdout + shown.stderr)
    wrong = dict(env, INTENTWATCH_SASL_PASSWORD=security["sasl_password"][::-1])
    known["reversed SASL password"] = security["sasl_password"][::-1].encode()
    refused = run_cli(["produce", str(trace)], wrong)
    assert refused.returncode == 1 and b"authentication as 'intentwatch' failed" in refused.stderr
    hay.add("wrong password error", refused.stdout + refused.stderr)
    no_user = dict(env, INTENTWATCH_SASL_USERNAME="")
    bad = run_cli(["config", "check"], no_user)
    assert bad.returncode == 2 and b"sasl_username" in bad.stderr
    hay.add("config error", bad.stdout + bad.stderr)

    # The search itself finds a secret where one is (a check that can fail).
    probe = Haystack()
    probe.add("probe", b"x" + base64.b64encode(known["decide token"]) + b"x")
    assert probe.leaks({"decide token": known["decide token"]})

    assert hay.leaks(known) == []
