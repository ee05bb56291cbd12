"""deploy/prometheus and deploy/grafana: promtool checks the configuration and the rules and
runs the rules' unit tests; a real Prometheus scrapes a real worker fed the sample trace, and
the series it stores, the rules it loads and every dashboard panel's query are checked."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import re
import subprocess
import time
from collections import Counter

import orjson
import pytest

from monitor.catalog import Catalog
from monitor.enforcement.verify import Verifier
from monitor.profiles import build_engine
from monitor.replay import read_lines, replay
from monitor.signing import load_public_key
from streams import local
from streams.enforcer import run_enforcer
from streams.produce import produce

from .conftest import SAMPLE_CATALOG, SAMPLE_TRACE
from .prometheus_server import RULES, Prometheus, binary

DEPLOY = local.ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "intentwatch.json"
# Series of Prometheus itself that panels may read besides the worker's.
PROMETHEUS_SERIES = {"up", "ALERTS"}
# Panels whose data this scenario does not produce: no alert fires, no Alertmanager is set.
EMPTY_HERE = {"Firing alerts", "Alerts pushed to Alertmanager",
              "OTel bridge spans, by outcome (intentwatch otel-bridge)",  # (no bridge runs)
              "Events not decided plainly in order, by kind"}  # (may be: the trace is in order)


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([binary("promtool"), *args], check=False, capture_output=True, text=True,
                          cwd=DEPLOY / "prometheus")


def test_promtool_accepts_the_scrape_configuration():
    out = promtool("check", "config", "prometheus.yml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 rule files found" in out.stdout


def test_promtool_accepts_the_rules():
    out = promtool("check", "rules", "rules.yml")
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_rules_unit_tests_pass():
    out = promtool("test", "rules", "rules_test.yml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout
    # Every alert of rules.yml is tested (firing and silent cases are in rules_test.yml).
    alerts = set(re.findall(r"- alert: (\w+)", RULES.read_text()))
    tested = set(re.findall(r"alertname: (\w+)",
                            (DEPLOY / "prometheus" / "rules_test.yml").read_text()))
    assert alerts and alerts == tested


# -- the live check -----------------------------------------------------------------------------
def shifted_trace() -> list[tuple[int, bytes]]:
    """The sample trace moved to the present (so its revoke command is not expired for a real
    enforcer), plus a task that is still running at the end, plus two malformed records."""
    events = [orjson.loads(raw) for _, raw in read_lines(SAMPLE_TRACE)]
    shift = time.time() - max(e["event_time"] for e in events)
    for e in events:
        e["event_time"] += shift
        if "expires_at" in e:
            e["expires_at"] += shift
    running = dict(events[0], task_id="task-running-1", credentials=["cred-running-1"],
                   event_time=events[-1]["event_time"], expires_at=time.time() + 3600)
    lines = [(0, orjson.dumps(e)) for e in [*events, running]]
    return lines + [(0, b"this is not json"), (0, b'["not", "an", "object"]')]


def expected_of(lines) -> dict:
    """What the worker must report, from the same lines replayed in process."""
    engine = build_engine("full", Catalog.load(SAMPLE_CATALOG))  # the worker's line-up
    out = replay(lines, engine, 512 * 1024, io.BytesIO(), io.BytesIO())
    decisions = out["decisions"]
    types = Counter(orjson.loads(raw)["type"] for _, raw in lines if raw.startswith(b"{"))
    return {"decisions": decisions, "verdicts": Counter(d["verdict"] for d in decisions),
            "types": types,
            "commands": sum((d["command"] is not None) + len(d["cascade"]) for d in decisions),
            "running": engine.retention.running(), "models": set(engine.model_state())}


def exported_names(exposition: str) -> set[str]:
    """Every series name the worker's /metrics can hold, from its TYPE lines."""
    names = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", exposition, re.MULTILINE):
        names.add(name)
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return names


def panel_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every dashboard panel, Grafana's variables filled in as
    Grafana would for "all workers"."""
    dash = json.loads(DASHBOARD.read_text())
    fill = {"$__rate_interval": "1m", "$__range": "5m", "$instance": ".*"}
    queries = []
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for var, value in fill.items():
                expr = expr.replace(var, value)
            assert "$" not in expr, (panel["title"], expr)
            queries.append((panel["title"], expr))
    return queries


def metric_names(expr: str) -> set[str]:
    """Series names in a PromQL expression: identifiers outside quotes and label matchers that
    name metrics (ours, process_*, or Prometheus's own)."""
    bare = re.sub(r'"[^"]*"', '""', expr)
    bare = re.sub(r"\{[^}]*\}", "{}", bare)        # label matchers
    bare = re.sub(r"\b(by|without)\s*\([^)]*\)", "", bare)  # grouping labels
    return {t for t in re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", bare)
            if t.startswith(("intentwatch", "process_")) or t in PROMETHEUS_SERIES}


@pytest.mark.kafka
def test_prometheus_stores_what_the_worker_decided(start_worker, signing_keys, tmp_path):
    worker = start_worker(model_snapshot_seconds=2)
    target = f"127.0.0.1:{worker.web_port}"
    lines = shifted_trace()
    expected = expected_of(lines)
    assert expected["commands"] == 1 and expected["running"] == 1  # the scenario holds

    folder = tmp_path / "prometheus"
    folder.mkdir()
    with Prometheus(folder, [target]) as prom:
        s = worker.settings
        asyncio.run(produce(lines, s))
        asyncio.run(local.read_topics(
            worker.bootstrap, [s.topic_decisions],
            lambda rs: len(rs) >= len(expected["decisions"]), timeout=90))
        # A real enforcer (no adapters: it logs) acks the revoke command; the worker measures it.
        enforcer = dataclasses.replace(s, fast_rebalance=True, app_id=f"{s.topic_acks}-enf")
        verifier = Verifier.for_keys([load_public_key(signing_keys[1])])
        acks = asyncio.run(asyncio.wait_for(run_enforcer(enforcer, verifier, [], stop_after=1),
                                            90))
        assert acks == {"enforced": 1}

        def stored(expr, label=None):
            return prom.values(expr, label)

        def matches(expr, want, label=None):
            return lambda: stored(expr, label) == want

        wait = lambda check, what: prom.wait_for(check, 90, what)
        wait(matches("sum by (verdict) (intentwatch_decisions_total)",
                     {v: float(n) for v, n in expected["verdicts"].items()}, "verdict"),
             "decisions by verdict")
        wait(matches("sum by (type) (intentwatch_events_total)",
                     {t: float(n) for t, n in expected["types"].items()}, "type"),
             "events by type")
        assert stored("intentwatch_revoke_commands_total") == {None: float(expected["commands"])}
        assert stored("intentwatch_decision_risk_count") == {
            None: float(len(expected["decisions"]))}
        assert stored("sum by (reason) (intentwatch_dead_letters_total)", "reason") == {
            "not_json": 1.0, "not_object": 1.0}
        assert stored("intentwatch_decision_latency_seconds_count") == {
            None: float(sum(expected["types"].values()))}
        wait(matches("intentwatch_active_tasks", {None: float(expected["running"])}),
             "running tasks")
        wait(matches('intentwatch_revoke_acks_total{status="enforced"}', {None: 1.0}),
             "the enforced ack")
        assert stored("intentwatch_revoke_ack_seconds_count") == {None: 1.0}

        # Lag: a series per assigned input partition, 0 once all is decided.
        partitions = {(t, str(p)) for t in (s.topic_intents, s.topic_actions)
                      for p in range(s.partitions)}
        lag = lambda: {(r["metric"]["topic"], r["metric"]["partition"]): float(r["value"][1])
                       for r in prom.query("intentwatch_consumer_lag_records")}
        wait(lambda: set(lag()) == partitions and not any(lag().values()),
             f"lag series of {sorted(partitions)} at 0, got {lag()}")

        sizes = wait(lambda: stored("intentwatch_model_state_bytes", "model"), "model sizes")
        assert set(sizes) == expected["models"] and all(v > 0 for v in sizes.values())
        assert stored("up") == {None: 1.0} or stored("up", "instance") == {target: 1.0}

        # The rules loaded and evaluate without error.
        def rules_healthy():
            groups = prom.api("rules")["data"]["groups"]
            rules = [r for g in groups for r in g["rules"]]
            return len(rules) == len(re.findall(r"- (record|alert):", RULES.read_text())) \
                and all(r["health"] == "ok" for r in rules) and rules
        wait(rules_healthy, "every rule loaded with health ok")

        # Every dashboard query runs, returns data (but where this scenario has none), and
        # reads only series the worker exports, the recording rules or Prometheus's own.
        exported = exported_names(worker.get("/metrics").decode())
        recorded = set(re.findall(r"record: (\S+)", RULES.read_text()))
        used = set()
        for title, expr in panel_queries():
            result = prom.query(expr)  # asserts status success
            assert result or title in EMPTY_HERE, f"{title}: no data for {expr}"
            names = metric_names(expr)
            assert names, (title, expr)
            assert names <= exported | recorded | PROMETHEUS_SERIES, (title, names - exported)
            used |= names
        # ... and every metric family of the worker has a panel.
        families = {n for n in re.findall(r"^# TYPE (intentwatch\S+) ", worker.get(
            "/metrics").decode(), re.MULTILINE)}
        missing = {f for f in families if not any(u.startswith(f) for u in used)}
        assert not missing, f"no panel for {sorted(missing)}"
