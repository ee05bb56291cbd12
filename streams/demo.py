"""`intentwatch demo`: a local broker, a worker, and a hijacked agent caught on the bus.

Without Java or Maven it says so and runs the same trace through `replay` in process.
"""

from __future__ import annotations

import asyncio
import io
import secrets
import tempfile
import time
import urllib.request
from pathlib import Path

import orjson

from monitor.catalog import Catalog
from monitor.config import Settings
from monitor.profiles import build_engine
from monitor.replay import read_lines, replay
from monitor.signing import generate_key_pair

from . import local
from .produce import produce


def _say(text: str) -> None:
    print(text, flush=True)


def _expected(trace: Path, catalog: Path) -> list[dict]:
    engine = build_engine("full", Catalog.load(catalog))  # the worker's line-up
    return replay(read_lines(trace), engine, 10**7, io.BytesIO(), io.BytesIO())["decisions"]


def _show(record) -> None:
    body = orjson.loads(record.value)
    if record.topic.endswith("revocations"):
        _say(f"  [{record.topic}] REVOKE task={body['task_id']} credentials="
             f"{body['credential_ids']} reason={body['reason']} id={body['command_id']} "
             f"signed by key {body.get('key_id', 'NONE')}")
    else:
        what = body["tool"] or body["event_type"]
        reasons = "; ".join(r["message"] for r in body["reasons"])
        _say(f"  [{record.topic}] {body['verdict'].upper()} risk={body['risk']:.2f} "
             f"task={body['task_id']} {what}: {reasons}")


def _count(records, topic: str) -> int:
    return sum(r.topic == topic for r in records)


def run_demo(trace: Path, catalog: Path, keep: bool = False) -> int:
    expected = _expected(trace, catalog)
    missing = local.have_java_and_maven()
    if missing:
        _say(f"intentwatch demo: {missing} not found, so no local Kafka broker can be built.")
        _say("Falling back to `intentwatch replay` in process (same engine, no broker):\n")
        from .cli import format_decision
        for d in expected:
            if d["verdict"] != "allow":
                _say("  " + format_decision(d))
        return 0

    state = Path(tempfile.mkdtemp(prefix="intentwatch-demo-"))
    _say(f"1/4 Starting a local Apache Kafka broker (KRaft, one node; state in {state})")
    bootstrap = local.start_broker(state / "kafka")
    proc = None
    try:
        web_port = local.free_port()
        private, _ = generate_key_pair()  # a throwaway key: the demo's commands are signed
        (state / "signing.pem").write_bytes(private)
        dashboard_token = secrets.token_urlsafe(24)  # this run's only: the URL below holds it
        env = local.worker_env(bootstrap, app_id="intentwatch-demo", fast_rebalance=1,
                               catalog=catalog, web_port=web_port, data_dir=state / "worker",
                               signing_key=state / "signing.pem",
                               dashboard_token=dashboard_token)
        _say(f"2/4 Starting the intentwatch worker (broker {bootstrap}, log {state}/worker.log)")
        proc = local.start_worker(env, state / "worker.log")
        local.wait_healthy(web_port, proc, state / "worker.log")

        settings = Settings(broker=f"kafka://{bootstrap}")
        _say(f"3/4 Publishing the sample trace {trace.name}: a benign mail agent and a travel "
             "agent hijacked by a prompt injection in a web page")
        asyncio.run(produce(read_lines(trace), settings))

        _say("    Alerts and revoke commands as they appear on the bus:")
        n_commands = sum(d["command"] is not None for d in expected)
        records = asyncio.run(local.read_topics(
            bootstrap, [settings.topic_decisions, settings.topic_alerts,
                        settings.topic_revocations],
            until=lambda rs: _count(rs, settings.topic_decisions) >= len(expected)
            and _count(rs, settings.topic_revocations) >= n_commands,
            timeout=90,
            on_record=lambda r: r.topic != settings.topic_decisions and _show(r)))
        live = local.values(records, settings.topic_decisions)
        commands = local.values(records, settings.topic_revocations)
        # The latest decision per id, as consumers keep them (an event decided again, when
        # its task's end was read before its intent, is published again under its id).
        latest = {d["decision_id"]: d for d in live}
        same = sorted(latest.values(), key=lambda d: d["decision_id"]) == sorted(
            expected, key=lambda d: d["decision_id"])
        _say(f"    {len(live)} decisions on {settings.topic_decisions}, {len(commands)} revoke "
             f"command(s); identical to an in-process replay: {'yes' if same else 'NO'}")

        url = f"http://127.0.0.1:{web_port}/metrics"
        _say(f"4/4 Metrics are served at {url}:")
        with urllib.request.urlopen(url, timeout=5) as resp:
            for line in resp.read().decode().splitlines():
                if line.startswith(("intentwatch_decisions_total", "intentwatch_revoke_commands_total",
                                    "intentwatch_events_total")):
                    _say("    " + line)
        # The token rides in the fragment: the browser keeps it, no server log sees it.
        _say(f"    the live dashboard: http://127.0.0.1:{web_port}/dashboard#token="
             f"{dashboard_token} (keep it up with intentwatch demo --keep-running)")
        if keep:
            _say("Broker and worker keep running; press Ctrl-C to stop.")
            try:
                while proc.poll() is None:
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
        ok = same and len(commands) == n_commands
        return 0 if ok else 1
    finally:
        _say("Shutting down the worker and the broker.")
        if proc is not None:
            local.stop_worker(proc)
        local.stop_broker(state / "kafka")
