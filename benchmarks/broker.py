"""End to end on the real Kafka broker: throughput and latency of one worker, each beside a plain
aiokafka baseline measured in the same run on the same broker, and the throughput also beside a
Faust app that does nothing but the worker's loop (the Faust floor).

    python -m benchmarks.broker [--events N] [--rate-fraction F]
                                [--latency-seconds S | --latency-events N] [--quick]
                                [--no-latency] [--no-faust-floor]
                                [--bootstrap HOST:PORT] [--json FILE]

1. Throughput. The input topics (intents, actions; fresh names per run) are pre-loaded with the
   first N events of a scaled trace (benchmarks.scale: the AgentDojo dev set replayed as many
   distinct tasks, K active at once; routed and keyed like `intentwatch produce`).
   - Baseline: a plain aiokafka process pinned to one core (the worker's core) reads both topics
     from offset 0, decodes every record with orjson and produces one small record per event to
     an output topic (acks=all, linger 0: Faust's producer defaults). Its rate defines the goal
     (worker / baseline >= 0.5).
   - Faust floor (benchmarks.faust_floor; --no-faust-floor skips it): the worker's Faust app
     and batched loop with a plain orjson decode in place of the engine, one record per event,
     started and pinned like the worker, on its own app id. Its CPU ms/event beside the
     worker's says how much of the worker's cost is its own work rather than Faust's and
     aiokafka's per-message path; the rate ratio worker / floor says so only when both are
     CPU-bound (the notes under "limits" say whether they were).
   - Then ONE `intentwatch worker` pinned to the same core consumes the same topics from offset
     0 (fresh app id, so a fresh consumer group and empty task table).
   Each rate is (records - 1) / (last - first record timestamp) of its output topic (the
   decisions topic for the worker, the echo topics of the baseline and the floor): CreateTime,
   taken by the producing process at send time, so start-up is not timed. The reader stops
   when the expected count of distinct decision ids has arrived (one per valid event once
   every held action's intent has arrived; see `expected_decisions`; an event decided again,
   when its task's end was read before its intent, is counted apart as a duplicate id) or when
   nothing new arrived for --idle-seconds, and says which.
2. Latency. At --rate-fraction (default 0.5) of the worker's rate from 1, this process produces
   the trace's next events at a steady pace (all event types, as a live stream would carry
   them) to the same worker, which keeps its state from 1. Timed are the agent.action events
   after a warm-up: from just before `AIOKafkaProducer.send` of the event to the return of the
   `getmany` that hands this process its decision (a consumer without group, positioned at the
   end of the decisions and revocations topics before the run); for violations also to the
   revoke command (first command carrying the event's id) on the revocations topic. Both
   instants are `time.perf_counter()` of this one process. Then the worker is stopped and the
   baseline runs: a plain aiokafka echo process on the same core, fed the same events at the
   same rate on fresh topics, timed from send to its echo record being readable.

The broker is started here (deploy/kafka/kafka-local.sh, pinned to the other cores) unless
--bootstrap names a running one. This process runs on the other cores too. Prints progress on
stderr, a summary table on stdout, and writes the figures as JSON (--json, default
out/benchmarks/broker.json). --quick: tiny sizes for a smoke test (well under a minute on a
running broker).

This module runs the parts in order and holds the command line. The parts: broker_trace (the
input and the decisions it yields), echo_baseline (the aiokafka process), faust_floor (the
Faust app), throughput (reading an output topic and its rate), paced_latency (the paced
driver), processes (CPU meters, pinning, machine facts), broker_report (the summary table and
the notes on limits).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shutil
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from benchmarks import scale
from benchmarks.broker_report import limits, summary_table
from benchmarks.broker_trace import Trace, expected_decisions
from benchmarks.echo_baseline import EchoProcess
from benchmarks.faust_floor import start as start_faust_floor
from benchmarks.paced_latency import paced, paced_items
from benchmarks.processes import (
    CpuMeter,
    commit,
    dirty_files,
    find_broker_pid,
    log_warnings,
    machine,
    start_pinned_worker,
    thread_affinity,
)
from benchmarks.throughput import collect
from monitor.config import Settings
from monitor.signing import generate_key_pair
from streams import local
from streams.produce import ensure_topics, produce

DEFAULT_JSON = Path("out") / "benchmarks" / "broker.json"
DEFAULTS = {"events": 200_000, "latency_seconds": 30.0, "warmup_seconds": 3.0,
            "active": scale.ACTIVE, "idle_seconds": 15.0}
QUICK = {"events": 1_500, "latency_seconds": 3.0, "warmup_seconds": 1.0, "active": 50,
         "idle_seconds": 10.0}


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


async def wait_ready(bootstrap: str, topics: list[str], partitions: int) -> None:
    """Wait until every partition of `topics` answers ListOffsets (a new topic's partitions
    can refuse produce requests for a moment after it is created)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.end_offsets([TopicPartition(t, p) for t in topics
                                    for p in range(partitions)])
    finally:
        await consumer.stop()


def _topics(prefix: str) -> dict[str, str]:
    return {f"topic_{k}": f"{prefix}.{k}" for k in
            ("intents", "actions", "decisions", "alerts", "revocations", "dead_letters", "acks")}


def _cpu_cost(run: dict, name: str, events_key: str = "records") -> None:
    """Add the process's CPU milliseconds per event over the measured window."""
    spent = ((run.get("cpu") or {}).get(name) or {}).get("cpu_seconds")
    if spent is not None and run.get(events_key):
        run["cpu_ms_per_event"] = round(1e3 * spent / run[events_key], 4)


def _faust_floor_run(bootstrap: str, topics: dict[str, str], partitions: int, app_id: str,
                     output: str, count: int, idle_seconds: float, cpu: int,
                     broker_pid: int | None, scratch: Path) -> dict:
    """The Faust floor on the pre-loaded topics, started and measured like the worker: its own
    app id (a fresh consumer group, so it reads from offset 0), its own web port (two Faust
    apps on one host collide on the default one), then stopped."""
    web_port = local.free_port()
    env = local.worker_env(bootstrap, **topics, app_id=app_id, fast_rebalance=1,
                           partitions=partitions, web_port=web_port,
                           data_dir=scratch / "floor-data")
    log = scratch / "faust-floor.log"
    t_start = time.monotonic()
    proc = start_faust_floor(env, log, cpu, output)
    try:
        local.wait_healthy(web_port, proc, log)
        healthy_s = round(time.monotonic() - t_start, 1)
        threads = thread_affinity(proc.pid)
        meter = CpuMeter({"faust_floor": proc.pid, "broker": broker_pid})
        run = asyncio.run(collect(bootstrap, output, count, idle_seconds, meter))
        if proc.poll() is not None:
            raise RuntimeError(f"the Faust floor exited: "
                               f"{log.read_text(errors='replace')[-3000:]}")
        with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/stats", timeout=5) as r:
            loop = orjson.loads(r.read())
    finally:
        local.stop_worker(proc)
    if loop["batches"]:
        loop["mean_batch"] = round(loop["events"] / loop["batches"], 1)
        loop["seconds_awaiting_send"] = round(loop["seconds_awaiting_send"], 3)
    run.update(healthy_after_seconds=healthy_s, threads_cpus=threads, loop=loop,
               log_warnings=log_warnings(log))
    _cpu_cost(run, "faust_floor")
    return run


def _ratios(e2e: dict) -> dict:
    """Worker / baseline (the issue's goal: 0.5), and worker / Faust floor: how much of the gap
    is Faust's own per-message path (a floor / baseline far below 0.5 means even a Faust app
    that does nothing cannot meet the goal)."""
    rate = {k: (e2e.get(k) or {}).get("events_per_second")
            for k in ("worker", "baseline", "faust_floor")}
    out = {}
    for name, a, b in (("ratio_worker_to_baseline", "worker", "baseline"),
                       ("ratio_worker_to_faust_floor", "worker", "faust_floor"),
                       ("ratio_faust_floor_to_baseline", "faust_floor", "baseline")):
        if rate[a] and rate[b]:
            out[name] = round(rate[a] / rate[b], 4)
    return out


def benchmark(bootstrap: str | None = None, *, events: int | None = None,
              rate_fraction: float = 0.5, rate: float | None = None,
              latency_seconds: float | None = None, latency_events: int | None = None,
              warmup_seconds: float | None = None, quick: bool = False,
              trace: Path | None = None, source: str = "auto", active: int | None = None,
              seed: int = scale.SEED, partitions: int = 4, worker_cpu: int = 0,
              idle_seconds: float | None = None, latency: bool = True,
              keep_dir: Path | None = None, command: str | None = None,
              faust_floor: bool = True) -> dict:
    """Run benchmarks 1 (throughput) and 2 (latency) and return the figures.

    bootstrap: a running broker (host:port); None starts the local one for the run. rate:
    paced rate of the latency runs in events/s (default rate_fraction times the worker's
    measured rate). latency_events overrides latency_seconds. quick: small defaults.
    faust_floor: also run the Faust floor (benchmarks.faust_floor) in the throughput run."""
    sizes = QUICK if quick else DEFAULTS
    events = events or sizes["events"]
    latency_seconds = latency_seconds or sizes["latency_seconds"]
    warmup_seconds = sizes["warmup_seconds"] if warmup_seconds is None else warmup_seconds
    active = active or sizes["active"]
    idle_seconds = idle_seconds or sizes["idle_seconds"]
    if events < 2 or not 0 < rate_fraction <= 1:
        raise ValueError("events must be at least 2 and rate_fraction in (0, 1]")
    all_cpus = sorted(os.sched_getaffinity(0))
    if worker_cpu not in all_cpus:
        raise ValueError(f"CPU {worker_cpu} is not available (this process may use {all_cpus})")
    others = set(all_cpus) - {worker_cpu} or {worker_cpu}
    started = time.monotonic()
    result: dict = {
        "benchmark": "broker", "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit(), "uncommitted_changes_in": dirty_files(), "command": command,
        "machine": machine(), "quick": quick,
        "placement": {"worker_and_baselines_cpu": worker_cpu,
                      "measuring_process_cpus": sorted(others)},
    }
    scratch = Path(tempfile.mkdtemp(prefix="iw-broker-bench-"))
    broker_dir = None
    proc = None
    echo = None
    source_trace = None
    old_affinity = os.sched_getaffinity(0)
    try:
        # This process, and the broker it starts, stay off the worker's core.
        os.sched_setaffinity(0, others)
        broker_pid = None
        if bootstrap is None:
            broker_dir = scratch / "kafka"
            _say("starting the local Kafka broker ...")
            bootstrap = local.start_broker(broker_dir)
            with contextlib.suppress(OSError, ValueError):
                broker_pid = int((broker_dir / "pid").read_text().strip())
            result["placement"]["broker"] = {
                "started_here": True,
                "cpus": thread_affinity(broker_pid) if broker_pid else "unknown"}
        else:
            broker_pid = find_broker_pid(bootstrap)
            result["placement"]["broker"] = {
                "started_here": False, "pid_found": broker_pid is not None,
                "cpus": thread_affinity(broker_pid) if broker_pid else "unknown"}
        result["bootstrap"] = bootstrap

        source_trace = Trace(source, trace, active, seed)
        catalog = source_trace.catalog
        prefix = f"bench-{int(time.time())}-{secrets.token_hex(3)}"
        topics = _topics(prefix)
        settings = Settings(broker=f"kafka://{bootstrap}", partitions=partitions, **topics)
        baseline_out, floor_out = f"{prefix}.baseline-echo", f"{prefix}.faust-floor"
        wanted = [*settings.topics(), baseline_out] + ([floor_out] if faust_floor else [])
        asyncio.run(ensure_topics(settings, wanted))
        asyncio.run(wait_ready(bootstrap, wanted, partitions))

        # -- 1. throughput ---------------------------------------------------------------
        _say(f"trace: {events} events from {trace}" if trace is not None else
             f"scaled trace: {events} events ({active} tasks active at once)")
        lines = source_trace.take(events)
        if len(lines) < events:
            raise ValueError(f"the trace has only {len(lines)} events, {events} asked")
        expected = expected_decisions(lines)
        _say(f"pre-loading {len(lines)} events into {topics['topic_intents']} and "
             f"{topics['topic_actions']} ...")
        t = time.monotonic()
        counts = asyncio.run(produce([(0, raw) for raw in lines], settings))
        preload_s = time.monotonic() - t
        result["trace"] = dict(source_trace.info, catalog=str(catalog), events=len(lines),
                               bytes=sum(len(raw) + 1 for raw in lines),
                               event_types=dict(Counter(orjson.loads(r)["type"]
                                                        for r in lines)))
        e2e: dict = {"events": len(lines), "per_topic": counts, "partitions": partitions,
                     "expected": expected,
                     "preload_seconds": round(preload_s, 2)}
        result["end_to_end"] = e2e

        _say(f"baseline: plain aiokafka read + orjson + one produce per event, on CPU "
             f"{worker_cpu} ...")
        echo = EchoProcess(bootstrap, [topics["topic_intents"], topics["topic_actions"]],
                           baseline_out, partitions, worker_cpu, limit=len(lines))
        echo.start()
        meter = CpuMeter({"baseline": echo.pid, "broker": broker_pid})
        base = asyncio.run(collect(bootstrap, baseline_out, len(lines), idle_seconds, meter))
        base["process"] = echo.finish()
        _cpu_cost(base, "baseline")
        echo = None
        e2e["baseline"] = base
        _say(f"  baseline: {base['records']} records, {base['events_per_second']} events/s")

        if faust_floor:
            _say(f"Faust floor: a Faust app with the worker's loop, a decode for the engine, "
                 f"on CPU {worker_cpu} ...")
            floor = _faust_floor_run(bootstrap, topics, partitions, f"iw-{prefix}-floor",
                                     floor_out, len(lines), idle_seconds, worker_cpu,
                                     broker_pid, scratch)
            result["placement"]["faust_floor_threads_cpus"] = floor.pop("threads_cpus")
            e2e["faust_floor"] = floor
            _say(f"  Faust floor: {floor['records']} records, "
                 f"{floor['events_per_second']} events/s")

        keys_dir = scratch / "keys"
        keys_dir.mkdir()
        private, _ = generate_key_pair()
        (keys_dir / "signing.pem").write_bytes(private)
        web_port = local.free_port()
        env = local.worker_env(bootstrap, **topics, app_id=f"iw-{prefix}", fast_rebalance=1,
                               partitions=partitions, catalog=catalog, web_port=web_port,
                               data_dir=scratch / "data", signing_key=keys_dir / "signing.pem")
        log = scratch / "worker.log"
        _say(f"worker: one `intentwatch worker` on CPU {worker_cpu} (log {log}) ...")
        t_start = time.monotonic()
        proc = start_pinned_worker(env, log, worker_cpu)
        local.wait_healthy(web_port, proc, log)
        healthy_s = round(time.monotonic() - t_start, 1)
        result["placement"]["worker_threads_cpus"] = thread_affinity(proc.pid)
        meter = CpuMeter({"worker": proc.pid, "broker": broker_pid})
        work = asyncio.run(collect(bootstrap, topics["topic_decisions"],
                                   expected["decisions"], idle_seconds, meter,
                                   decode_decisions=True))
        work["healthy_after_seconds"] = healthy_s
        _cpu_cost(work, "worker")
        work["start_to_last_decision_seconds"] = round(time.monotonic() - t_start, 1)
        if proc.poll() is not None:
            raise RuntimeError(f"the worker exited: {log.read_text(errors='replace')[-3000:]}")
        e2e["worker"] = work
        _say(f"  worker: {work['records']} decisions, {work['events_per_second']} events/s")
        e2e.update(_ratios(e2e))
        e2e["how"] = (
            "Input topics pre-loaded before any process starts. Baseline first, then the "
            "Faust floor, then the worker, each alone on the same CPU. events/s = (records - "
            "1) / (last - first CreateTime) of its output topic (decisions for the worker, "
            "one record per event for the baseline and the Faust floor); the reader stops at "
            f"the expected count or after {idle_seconds:g} s without a new record.")

        # -- 2. latency ------------------------------------------------------------------
        if latency:
            rate_from = "given"
            if rate is None:
                if not work["events_per_second"]:
                    raise RuntimeError("no worker rate to pace the latency run at")
                rate = rate_fraction * work["events_per_second"]
                rate_from = f"{rate_fraction:g} x the worker's measured events/s"
            warmup = int(rate * warmup_seconds)
            measured = latency_events or max(1, int(rate * latency_seconds))
            more = source_trace.take(warmup + measured)
            lat: dict = {"rate": round(rate, 1), "rate_from": rate_from,
                         "warmup_events": warmup, "events": len(more) - warmup}
            if len(more) < warmup + measured:
                lat["note"] = f"the trace ran out: {len(more)} of {warmup + measured} events"
            result["latency"] = lat
            items = paced_items(more, settings, warmup)
            lat["timed_actions"] = sum(1 for it in items if it[4])
            _say(f"latency, worker: {len(items)} events at {rate:,.0f}/s "
                 f"({len(items) / rate:.0f} s, first {warmup} not timed) ...")
            meter = CpuMeter({"worker": proc.pid, "broker": broker_pid})
            lat["worker"] = asyncio.run(paced(
                bootstrap, items, rate, {"decisions": topics["topic_decisions"],
                                         "revocations": topics["topic_revocations"]},
                partitions, meter))
            _cpu_cost(lat["worker"], "worker", "events_sent")
            if proc.poll() is not None:
                raise RuntimeError("the worker exited during the latency run")
            local.stop_worker(proc)
            result["worker_log"] = log_warnings(log)
            proc = None

            echo_topics = {k: f"{prefix}.echo-{k}" for k in ("intents", "actions", "out")}
            echo_settings = Settings(broker=f"kafka://{bootstrap}", partitions=partitions,
                                     topic_intents=echo_topics["intents"],
                                     topic_actions=echo_topics["actions"])
            asyncio.run(ensure_topics(echo_settings, list(echo_topics.values())))
            asyncio.run(wait_ready(bootstrap, list(echo_topics.values()), partitions))
            echo = EchoProcess(bootstrap, [echo_topics["intents"], echo_topics["actions"]],
                               echo_topics["out"], partitions, worker_cpu)
            echo.start()
            _say(f"latency, baseline echo: the same {len(items)} events at {rate:,.0f}/s ...")
            meter = CpuMeter({"baseline": echo.pid, "broker": broker_pid})
            lat["baseline"] = asyncio.run(paced(
                bootstrap, paced_items(more, echo_settings, warmup), rate,
                {"decisions": echo_topics["out"]}, partitions, meter))
            lat["baseline"]["process"] = echo.finish()
            _cpu_cost(lat["baseline"], "baseline", "events_sent")
            echo = None
            lat["how"] = (
                "Timed: agent.action events after the warm-up. Start: just before "
                "AIOKafkaProducer.send (acks all, linger 0) in this process. End: return of "
                "the getmany() in this same process (a consumer without group, at the end of "
                "the output topics before the run) that yields the first record carrying the "
                "event's id: the decision (worker), its revoke command on the revocations "
                "topic (violations), the echo record (baseline). Both instants are "
                "time.perf_counter() of one process. Events of every type are sent, paced "
                "from a fixed schedule (send_lag_ms: behind schedule).")
        if proc is not None:
            result["worker_log"] = log_warnings(log)
        result["load_avg_at_end"] = os.getloadavg()
        result["limits"] = limits(result)
    finally:
        os.sched_setaffinity(0, old_affinity)
        if echo is not None:
            with contextlib.suppress(Exception):
                echo.finish(5)
        if proc is not None:
            local.stop_worker(proc)
        if source_trace is not None:
            source_trace.close()
        if broker_dir is not None:
            local.stop_broker(broker_dir)
        if keep_dir is not None:
            keep_dir.mkdir(parents=True, exist_ok=True)
            for name in ("worker.log", "faust-floor.log"):
                if (scratch / name).exists():
                    shutil.copy(scratch / name, keep_dir / name)
        shutil.rmtree(scratch, ignore_errors=True)
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.broker",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=None,
                        help=f"events pre-loaded for the throughput runs "
                             f"(default {DEFAULTS['events']:,}; --quick {QUICK['events']:,})")
    parser.add_argument("--rate-fraction", type=float, default=0.5,
                        help="latency runs' rate as a fraction of the worker's measured rate "
                             "(default 0.5)")
    parser.add_argument("--rate", type=float, default=None,
                        help="latency runs' rate in events/s (overrides --rate-fraction)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--latency-seconds", type=float, default=None,
                       help=f"measured length of each latency run "
                            f"(default {DEFAULTS['latency_seconds']:g}; --quick "
                            f"{QUICK['latency_seconds']:g})")
    group.add_argument("--latency-events", type=int, default=None,
                       help="measured events of each latency run (instead of seconds)")
    parser.add_argument("--warmup-seconds", type=float, default=None,
                        help=f"untimed start of each latency run "
                             f"(default {DEFAULTS['warmup_seconds']:g})")
    parser.add_argument("--no-latency", action="store_true", help="throughput only")
    parser.add_argument("--no-faust-floor", action="store_true",
                        help="skip the Faust floor in the throughput run")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--bootstrap", default=None,
                        help="a running broker host:port (default: start the local one)")
    parser.add_argument("--trace", type=Path, default=None,
                        help="a trace written by `python -m benchmarks.scale` (default: "
                             "generate it in process)")
    parser.add_argument("--source", choices=("auto", "agentdojo", "sample"), default="auto",
                        help="template runs of the generated trace (auto: the AgentDojo dev "
                             "set if present, else the bundled sample trace)")
    parser.add_argument("--active", type=int, default=None,
                        help=f"tasks active at once in the generated trace "
                             f"(default {DEFAULTS['active']}; --quick {QUICK['active']})")
    parser.add_argument("--partitions", type=int, default=4,
                        help="partitions of each topic (default 4)")
    parser.add_argument("--cpu", type=int, default=0,
                        help="the CPU of the worker and of the baselines (default 0)")
    parser.add_argument("--idle-seconds", type=float, default=None,
                        help="stop reading an output topic after this long without a record")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON,
                        help="where the figures go (default %(default)s); '-' for stdout")
    parser.add_argument("--keep-log", type=Path, default=None,
                        help="copy the worker's and the Faust floor's logs into this folder")
    args = parser.parse_args(argv)
    if args.events is not None and args.events < 2:
        parser.error("--events must be at least 2")
    if not 0 < args.rate_fraction <= 1:
        parser.error("--rate-fraction must be in (0, 1]")
    if args.trace is not None and not args.trace.exists():
        parser.error(f"{args.trace} not found")
    missing = None if args.bootstrap else local.have_java_and_maven()
    if missing:
        print(f"broker: cannot start the local broker: {missing} not found "
              f"(or pass --bootstrap)", file=sys.stderr)
        return 2
    command = " ".join(["python -m benchmarks.broker",
                        *(sys.argv[1:] if argv is None else argv)])
    result = benchmark(args.bootstrap, events=args.events, rate_fraction=args.rate_fraction,
                       rate=args.rate, latency_seconds=args.latency_seconds,
                       latency_events=args.latency_events, warmup_seconds=args.warmup_seconds,
                       quick=args.quick, trace=args.trace, source=args.source,
                       active=args.active, partitions=args.partitions, worker_cpu=args.cpu,
                       idle_seconds=args.idle_seconds, latency=not args.no_latency,
                       keep_dir=args.keep_log, command=command,
                       faust_floor=not args.no_faust_floor)
    blob = orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n"
    print(summary_table(result))
    if str(args.json) == "-":
        sys.stdout.write(blob.decode())
    else:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_bytes(blob)
        print(f"figures in {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
