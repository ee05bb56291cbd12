"""Latency of POST /v1/decide on a live worker, beside an empty handler on the same server.

    python -m benchmarks.decide_latency [--requests N] [--warmup W] [--out DIR]

Starts the local Kafka broker (deploy/kafka/kafka-local.sh, in a scratch folder) and one
`intentwatch worker` with a decide token and INTENTWATCH_BENCH_NOOP=1 (which adds POST /v1/noop,
a handler that returns `{}` without reading anything). It publishes the sample trace up to (not
including) the hijacked send_money request and waits until the worker has decided all of it.

Then one client on one keep-alive HTTP/1.1 connection (http.client) sends W warm-up requests
to each endpoint, then N measured requests to each, one at a time, alternating decide and noop
so both see the same machine conditions. The decide bodies cycle through every proposed action
(phase "requested") of the sample trace, so the answers mix "allow" and "deny"; the noop gets
the same bodies. Each latency is the client's wall time from sending the request to having
read the whole answer (time.perf_counter_ns).

Prints a table and writes OUT/decide_latency.json (default out/benchmarks). Stops the worker
and the broker at the end, also on errors.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import math
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson

from monitor.config import Settings
from streams import local
from streams.decide import BENCH_NOOP_ENV, DECIDE_PATH, NOOP_PATH
from streams.produce import produce

SAMPLE_TRACE = local.ROOT / "monitor" / "data" / "sample_trace.jsonl"
SAMPLE_CATALOG = local.ROOT / "monitor" / "data" / "sample_catalog.json"
DEFAULT_OUT = Path("out") / "benchmarks"
GOAL_P99_MS = 10.0
QUANTILES = (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("p99.9", 0.999))


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def quantile(sorted_ms: list[float], q: float) -> float:
    """Nearest-rank quantile of sorted samples."""
    return sorted_ms[max(0, math.ceil(q * len(sorted_ms)) - 1)]


def summary(samples_ns: list[int]) -> dict:
    ms = sorted(s / 1e6 for s in samples_ns)
    out = {"requests": len(ms)}
    out.update({name: round(quantile(ms, q), 4) for name, q in QUANTILES})
    out["max"] = round(ms[-1], 4)
    out["mean"] = round(sum(ms) / len(ms), 4)
    return out


def machine() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"platform": platform.platform(), "cpus": os.cpu_count(), "cpu_model": model,
            "python": platform.python_version(), "load_avg_at_start": os.getloadavg()}


def commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=local.ROOT,
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=local.ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


class Client:
    """One keep-alive HTTP/1.1 connection to the worker."""

    def __init__(self, port: int, token: str):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                        "Connection": "keep-alive"}

    def post(self, path: str, body: bytes) -> tuple[int, bytes, int]:
        """(status, body, elapsed ns)."""
        t0 = time.perf_counter_ns()
        self.conn.request("POST", path, body=body, headers=self.headers)
        resp = self.conn.getresponse()
        data = resp.read()
        return resp.status, data, time.perf_counter_ns() - t0

    def get(self, path: str) -> bytes:
        self.conn.request("GET", path)
        return self.conn.getresponse().read()

    def close(self) -> None:
        self.conn.close()


def feed(bootstrap: str, settings: Settings) -> list[bytes]:
    """Publish the sample trace up to the send_money request; wait until it is decided.
    Returns the bodies to decide: every proposed action of the trace."""
    events = [orjson.loads(line) for line in SAMPLE_TRACE.read_bytes().splitlines() if line]
    cut = next(i for i, e in enumerate(events)
               if e.get("tool") == "send_money" and e.get("phase") == "requested")
    asyncio.run(produce([(0, orjson.dumps(e)) for e in events[:cut]], settings))
    records = asyncio.run(local.read_topics(bootstrap, [settings.topic_decisions],
                                            lambda rs: len(rs) >= cut, timeout=90))
    if len(records) < cut:
        raise RuntimeError(f"the worker decided {len(records)} of {cut} events")
    return [orjson.dumps(e) for e in events
            if e.get("type") == "agent.action" and e.get("phase") == "requested"]


def first_answer(client: Client, body: bytes, timeout: float = 60.0) -> dict:
    """The first 200 of /v1/decide (503 while partitions are still being assigned)."""
    deadline = time.monotonic() + timeout
    while True:
        status, data, _ = client.post(DECIDE_PATH, body)
        if status == 200:
            return orjson.loads(data)
        if status != 503 or time.monotonic() > deadline:
            raise RuntimeError(f"/v1/decide answered {status}: {data[:300]!r}")
        time.sleep(0.3)


def scrape_inline_histogram(client: Client) -> dict:
    text = client.get("/metrics").decode()
    values = {}
    for line in text.splitlines():
        for name in ("count", "sum"):
            if line.startswith(f"intentwatch_inline_decision_seconds_{name} "):
                values[name] = float(line.split()[-1])
    if not values.get("count"):
        return {}
    return {"count": int(values["count"]),
            "mean_ms": round(values["sum"] / values["count"] * 1e3, 4)}


def measure(client: Client, bodies: list[bytes], n: int, warmup: int) -> dict:
    decide_ns: list[int] = []
    noop_ns: list[int] = []
    decisions: dict[str, int] = {}
    for i in range(warmup + n):
        body = bodies[i % len(bodies)]
        status, answer, ns = client.post(DECIDE_PATH, body)
        if status != 200:
            raise RuntimeError(f"/v1/decide answered {status}: {answer[:300]!r}")
        status, data, ns_noop = client.post(NOOP_PATH, body)
        if status != 200:
            raise RuntimeError(f"/v1/noop answered {status}: {data[:300]!r}")
        if i >= warmup:
            decide_ns.append(ns)
            noop_ns.append(ns_noop)
            decision = orjson.loads(answer)["decision"]
            decisions[decision] = decisions.get(decision, 0) + 1
    return {"decide": decide_ns, "noop": noop_ns, "decisions": decisions}


def table(figures: dict) -> str:
    cols = ["requests"] + [name for name, _ in QUANTILES] + ["max", "mean"]
    lines = [f"{'endpoint':<12}" + "".join(f"{c:>10}" for c in cols) + "   (ms)"]
    for label in ("decide", "noop"):
        row = figures[label]
        lines.append(f"{'/v1/' + label:<12}" + f"{row['requests']:>10}" +
                     "".join(f"{row[c]:>10.3f}" for c in cols[1:]))
    diff = {c: figures["decide"][c] - figures["noop"][c] for c in cols[1:]}
    lines.append(f"{'difference':<12}" + f"{'':>10}" + "".join(f"{diff[c]:>10.3f}"
                                                               for c in cols[1:]))
    return "\n".join(lines)


def run(n: int, warmup: int, out: Path) -> dict:
    scratch = Path(tempfile.mkdtemp(prefix="iw-decide-bench-"))
    broker_dir = scratch / "kafka"
    proc = None
    client = None
    started = time.monotonic()
    try:
        _say("starting the local Kafka broker ...")
        bootstrap = local.start_broker(broker_dir)
        prefix = f"bench-{int(time.time())}"
        topics = {f"topic_{k}": f"{prefix}.{k}" for k in
                  ("intents", "actions", "decisions", "alerts", "revocations", "dead_letters")}
        token = secrets.token_urlsafe(24)
        port = local.free_port()
        env = local.worker_env(bootstrap, **topics, app_id=f"iw-{prefix}", fast_rebalance=1,
                               catalog=SAMPLE_CATALOG, web_port=port,
                               data_dir=scratch / "data", decide_token=token)
        env[BENCH_NOOP_ENV] = "1"
        log = scratch / "worker.log"
        _say(f"starting a worker on port {port} (log {log}) ...")
        proc = local.start_worker(env, log)
        client = Client(port, token)
        local.wait_healthy(port, proc, log)
        settings = Settings(broker=f"kafka://{bootstrap}", **topics)
        _say("feeding the sample trace up to the send_money request ...")
        bodies = feed(bootstrap, settings)
        answers = [first_answer(client, b) for b in bodies]
        mix = {a["tool"] + ":" + a["decision"] for a in answers}
        _say(f"decide answers per body: {sorted(mix)}")
        _say(f"measuring: {warmup} warm-up + {n} requests per endpoint, alternating ...")
        raw = measure(client, bodies, n, warmup)
        server = scrape_inline_histogram(client)
        figures = {
            "benchmark": "decide_latency",
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "commit": commit(),
            "machine": machine(),
            "requests": n,
            "warmup": warmup,
            "client": "http.client, one keep-alive connection, sequential, decide and noop "
                      "alternating; latency = send request .. whole answer read",
            "bodies": len(bodies),
            "answers": sorted(mix),
            "decisions": raw["decisions"],
            "decide": summary(raw["decide"]),
            "noop": summary(raw["noop"]),
            "server_side_inline_histogram": server,
            "goal_p99_ms": GOAL_P99_MS,
        }
        figures["goal_met"] = figures["decide"]["p99"] < GOAL_P99_MS
        figures["seconds"] = round(time.monotonic() - started, 1)
        out.mkdir(parents=True, exist_ok=True)
        path = out / "decide_latency.json"
        path.write_bytes(orjson.dumps(figures, option=orjson.OPT_INDENT_2) + b"\n")
        print(table(figures))
        if server:
            print(f"server side (intentwatch_inline_decision_seconds): {server['count']} "
                  f"decisions, mean {server['mean_ms']:.3f} ms")
        print(f"goal p99 < {GOAL_P99_MS:g} ms: {'met' if figures['goal_met'] else 'NOT met'}; "
              f"figures in {path}")
        return figures
    finally:
        if client is not None:
            client.close()
        if proc is not None:
            local.stop_worker(proc)
        local.stop_broker(broker_dir)
        shutil.rmtree(scratch, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.decide_latency",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000,
                        help="measured requests per endpoint (default 2000)")
    parser.add_argument("--warmup", type=int, default=200,
                        help="unmeasured requests per endpoint first (default 200)")
    parser.add_argument("--out", default=str(DEFAULT_OUT),
                        help="folder of decide_latency.json (default out/benchmarks)")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.warmup < 0:
        parser.error("--requests must be at least 1 and --warmup at least 0")
    run(args.requests, args.warmup, Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
