"""Bytes of state per active task, whether ended tasks' state is freed, and memory under churn.

(a)+(b) A child process (so nothing else sits in its heap) builds a `full` engine with an
in-process dict store, reads its resident size (VmRSS), then feeds the first few events
(intent first, no task.end) of each of the scaled trace's first N copies through
Pipeline.handle, as if N tasks were active at once, and reads VmRSS again. It reports:
  - the orjson-serialized size of every task state in the store (mean, p50, p99, max), which is
    what a changelog-backed table holds per task, and of every delegation registry entry;
  - resident memory before and after, and the difference per task. The difference also holds
    the learned detectors' bounded caches (segment features, up to 65,536 entries) and model
    growth, so it is an upper bound of the store's own cost.
  Each is measured twice, in two child processes: with the engine's default store (a dict of
  live states, as replay and eval use) and with the worker's (streams.app.JsonStore over a
  dict of bytes, as Faust's memory store holds a table: each state as its JSON, the
  INTENTWATCH_STATE_CACHE most recently used decoded). Neither is a Faust worker (no
  consumer, producer or changelog buffers).
(c) Then it sends task.end for every task (all at the same event time) and reports how many
states the store still holds right after (compact ended states, kept for the retention period), then moves event time past
the retention period (one more event, of a sentinel task, with the sweep's per-event batch
limit lifted so that one event frees everything due) and reports how many ended states and
registry entries are still held, their serialized bytes, and VmRSS after gc.collect().
(d) Churn: another child process feeds the scaled trace (K tasks active at once, tasks
starting and ending continuously, see benchmarks.scale) through a `full` engine whose retention
is shortened (default 60 s of event time, the trace advancing 1 s per K events) so that the
run passes the retention period many times, and samples, as it goes, the event time, the
number of states and registry entries held, how many of those are ended, and VmRSS. Bounded
means the held states level off near K + (tasks ending per second) x retention, and RSS levels
off in the second half of the run.

    python -m benchmarks.memory --tasks 100000 [--million] [--no-churn]
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

PER_TASK = 4           # intent + 3 actions
CHURN = {"events": 120_000, "active": 200, "retention": 60.0}
SAMPLES = 40
ROOT = Path(__file__).resolve().parents[1]


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def rss_bytes() -> dict:
    """Current and peak resident set size of this process, from /proc/self/status."""
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, value = line.split(":")
                    out[key] = int(value.split()[0]) * 1024
    except OSError:
        pass
    if "VmRSS" not in out:  # no procfs: the peak is all getrusage knows (KiB on Linux)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        out = {"VmRSS": peak, "VmHWM": peak}
    return {"rss": out["VmRSS"], "peak": out["VmHWM"]}


def size_stats(sizes: list[int]) -> dict:
    if not sizes:
        return {"n": 0}
    s = sorted(sizes)
    n = len(s)
    return {"n": n, "mean": round(sum(s) / n, 1), "p50": s[n // 2],
            "p99": s[min(n - 1, (99 * n) // 100)], "max": s[-1], "total": sum(s)}


def write_feed(path: Path, events_path: Path, n_tasks: int, per_task: int) -> dict:
    """The first per_task events of the scaled trace's first n_tasks copies, task by task."""
    from benchmarks.scale import load_runs, task_events
    runs = load_runs(events_path)
    n_events = 0
    with open(path, "wb") as f:
        buf = []
        for events in task_events(runs, n_tasks, per_task):
            buf.extend(orjson.dumps(e) + b"\n" for e in events)
            n_events += len(events)
            if len(buf) >= 10_000:
                f.write(b"".join(buf))
                buf.clear()
        f.write(b"".join(buf))
    return {"tasks": n_tasks, "events": n_events, "per_task": per_task}


class WorkerStores:
    """The worker's stores (streams.app.JsonStore) over plain dicts of bytes, as Faust's
    memory store holds them: each state as its JSON bytes, the most recently used decoded.
    Changes are written back every BATCH records, as the worker does once per batch."""

    BATCH = 500

    def __init__(self):
        import types

        from monitor.config import Settings
        from streams.app import JsonStore

        def table(name: str):
            return types.SimpleNamespace(name=name, data={}, changelog_topic=types.
                                         SimpleNamespace(get_topic_name=lambda: name))
        # (by key: off the bus there is no record being decided to take a partition from)
        self.stores = [JsonStore(table(name), by_key=True, cached=Settings().state_cache)
                       for name in ("tasks", "registry")]
        self.pending = 0

    def handled(self) -> None:
        self.pending += 1
        if self.pending >= self.BATCH:
            self.flush()

    def flush(self) -> None:
        self.pending = 0
        for store in self.stores:
            store.changes()


def child(feed: Path, profile: str, kind: str = "dict") -> dict:
    """Runs in the child process: feed, measure, end every task, measure again. kind: the
    store, the engine's default dict of live states or "worker" (WorkerStores)."""
    from monitor.catalog import Catalog
    from monitor.importers.agentdojo import CATALOG_PATH
    from monitor.pipeline import Pipeline
    from monitor.profiles import build_engine

    worker = WorkerStores() if kind == "worker" else None
    engine = build_engine(profile, Catalog.load(CATALOG_PATH),
                          **({"store": worker.stores[0], "registry": worker.stores[1]}
                             if worker else {}))
    pipe = Pipeline(engine)

    def handle(raw: bytes):
        out = pipe.handle(raw)
        if worker:
            worker.handled()
        return out
    gc.collect()
    before = rss_bytes()
    started = time.perf_counter()
    n, dead, last = 0, 0, started
    last_time: dict[str, float] = {}
    with open(feed, "rb") as f:
        for raw in f:
            raw = raw.rstrip(b"\n")
            _, err = handle(raw)
            dead += err is not None
            n += 1
            if n % 5000 == 0 and time.perf_counter() - last >= 2:
                last = time.perf_counter()
                _say(f"  memory: {n} events, {len(engine.store)} tasks")
    if worker:
        worker.flush()
    feed_seconds = time.perf_counter() - started
    for tid, task in engine.store.items():
        last_time[tid] = task["window"]["last_time"] or task["intent"]["event_time"]
    gc.collect()
    after = rss_bytes()
    store = engine.store
    n_tasks = len(store)
    state_sizes = [len(orjson.dumps(t)) for t in store.values()]
    registry_sizes = [len(orjson.dumps(e)) for e in engine.registry.values()]
    active = {"tasks": n_tasks, "events": n, "dead_letters": dead,
              "feed_seconds": round(feed_seconds, 2),
              "events_per_second": round(n / feed_seconds, 1) if feed_seconds else None,
              "state_bytes": size_stats(state_sizes),
              "registry_entry_bytes": size_stats(registry_sizes),
              "rss_before": before["rss"], "rss_after": after["rss"], "peak": after["peak"],
              "rss_delta": after["rss"] - before["rss"],
              "rss_delta_per_task": round((after["rss"] - before["rss"]) / n_tasks, 1)
              if n_tasks else None}
    del state_sizes, registry_sizes

    # (c) end every task, all at the same event time (the feed's copies start 1 s apart, so
    # ending each right after its own last event would free the first ones before the last
    # ones end): is its state freed once the retention period has passed?
    ended_at = max(last_time.values(), default=0.0) + 1.0
    for tid in last_time:
        handle(orjson.dumps({"v": 1, "type": "task.end", "task_id": tid,
                             "event_time": ended_at, "event_id": f"{tid}#end"}))
    if worker:
        worker.flush()
    gc.collect()
    end_rss = rss_bytes()
    held = [t for t in store.values() if t["ended_at"] is not None]
    after_end = {"states": len(held), "state_bytes": sum(len(orjson.dumps(t)) for t in held),
                 "registry_entries": len(engine.registry), "rss": end_rss["rss"]}
    del held
    ret = engine.retention
    horizon = ended_at + ret.seconds + 1.0
    ret.batch = 10**12  # one event frees everything due (the live engine frees 64 per event)
    handle(orjson.dumps({"v": 1, "type": "task.intent", "task_id": "memory-sentinel",
                         "agent_id": "bench", "workload_id": "spiffe://bench/sentinel",
                         "goal": "move event time", "tools": [], "event_time": horizon}))
    if worker:
        worker.flush()
    gc.collect()
    ended_rss = rss_bytes()
    held = [t for t in store.values() if t["ended_at"] is not None]
    ended = {"tasks_ended": len(last_time), "retention_seconds": ret.seconds,
             "right_after_end": after_end, "event_time_moved_to": horizon,
             "states_still_in_store": len(held),
             "registry_entries_still_held": len(engine.registry) - 1,  # (the sentinel's)
             "state_bytes_still_held": sum(len(orjson.dumps(t)) for t in held),
             "freed": len(held) == 0, "freed_by_retention": ret.freed,
             "rss_after_ends": ended_rss["rss"],
             "rss_delta_after_ends": ended_rss["rss"] - before["rss"]}
    return {"profile": profile, "store": kind, "pid": os.getpid(), "active": active,
            "ended": ended}


def churn_child(trace: Path, profile: str, retention_seconds: float, samples: int) -> dict:
    """Runs in the child process: the scaled trace through one engine, sampled as it goes."""
    from monitor.catalog import Catalog
    from monitor.importers.agentdojo import CATALOG_PATH
    from monitor.pipeline import Pipeline
    from monitor.profiles import build_engine

    engine = build_engine(profile, Catalog.load(CATALOG_PATH))
    engine.retention.seconds = retention_seconds
    pipe = Pipeline(engine)
    with open(trace, "rb") as f:
        total = sum(1 for _ in f)
    every = max(1, total // samples)
    gc.collect()
    before = rss_bytes()
    points, n, dead, ends, t_first = [], 0, 0, 0, None
    started = last = time.perf_counter()
    with open(trace, "rb") as f:
        for raw in f:
            _, err = pipe.handle(raw.rstrip(b"\n"))
            dead += err is not None
            ends += b'"type":"task.end"' in raw
            n += 1
            t = engine.retention.watermark
            if t_first is None:
                t_first = t
            if n % every == 0 or n == total:
                store = engine.store
                ended = sum(1 for s in store.values() if s["ended_at"] is not None)
                points.append({"events": n, "event_seconds": round(t - t_first, 1),
                               "seconds": round(time.perf_counter() - started, 2),
                               "states": len(store), "ended_states": ended,
                               "registry_entries": len(engine.registry),
                               "indexed": engine.retention.stats()["indexed"],
                               "freed": engine.retention.freed, "rss": rss_bytes()["rss"]})
                if time.perf_counter() - last >= 2:
                    last = time.perf_counter()
                    _say(f"  churn: {n}/{total} events, {len(store)} states held, "
                         f"{engine.retention.freed} freed")
    seconds = time.perf_counter() - started
    half = [p for p in points if p["events"] > total // 2]
    first = [p for p in points if p["events"] <= total // 2]
    span = points[-1]["event_seconds"] if points else 0.0
    end_rate = ends / span if span > 0 else None
    return {"profile": profile, "events": n, "dead_letters": dead, "tasks_ended": ends,
            "seconds": round(seconds, 2), "events_per_second": round(n / seconds, 1),
            "retention_seconds": retention_seconds, "event_time_span": round(span, 1),
            "retention_periods_passed": round(span / retention_seconds, 1)
            if retention_seconds else None,
            "ends_per_event_second": round(end_rate, 2) if end_rate else None,
            "rss_before": before["rss"], "samples": points,
            "max_states_first_half": max((p["states"] for p in first), default=None),
            "max_states_second_half": max((p["states"] for p in half), default=None),
            "rss_mid": half[0]["rss"] if half else None,
            "rss_end": points[-1]["rss"] if points else None}


def run_child(feed: Path, profile: str, timeout: float, store: str = "dict") -> dict:
    cmd = [sys.executable, "-m", "benchmarks.memory", "--child", str(feed),
           "--profile", profile, "--store", store]
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, timeout=timeout, check=True)
    return orjson.loads(proc.stdout)


def run_churn(events_path: Path, work: Path, profile: str, events: int, active: int,
              retention_seconds: float, timeout: float) -> dict:
    from benchmarks.scale import load_runs, write_scaled
    trace = work / "churn.jsonl"
    _say(f"memory: churn trace, {events} events, {active} tasks active at once")
    scaled = write_scaled(trace, load_runs(events_path), events, active=active, progress=False)
    _say(f"memory: churn child process ({profile}, retention {retention_seconds} s)")
    cmd = [sys.executable, "-m", "benchmarks.memory", "--churn-child", str(trace),
           "--profile", profile, "--churn-retention", str(retention_seconds)]
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, timeout=timeout, check=True)
    trace.unlink()
    result = orjson.loads(proc.stdout)
    result["active"] = active
    result["scaled_trace"] = {k: scaled[k] for k in ("events", "tasks", "tasks_ended")}
    # Steady state: the K running tasks plus those that ended within the retention period.
    rate = result["ends_per_event_second"] or 0
    result["expected_plateau_states"] = round(active + rate * retention_seconds)
    return result


def benchmark(events_path: Path, work: Path, n_tasks: int = 100_000,
              per_task: int = PER_TASK, million: bool = False, profile: str = "full",
              timeout: float = 600, churn: dict | None = None) -> dict:
    """events_path: the imported dev set (the scaled trace's templates). churn: run (d) with
    these sizes ({"events", "active", "retention"}, see CHURN); None skips it."""
    result: dict = {"profile": profile, "per_task_events": per_task,
                    "stores": {"dict": "in-process dict of live states (the engine's default)",
                               "worker": "the worker's JsonStore over a dict of bytes (Faust's "
                                         "memory store), 10,000 states kept decoded"},
                    "runs": {}, "worker_store": {}}
    sizes = [n_tasks] + ([1_000_000] if million and n_tasks < 1_000_000 else [])
    for n in sizes:
        feed = work / f"feed-{n}.jsonl"
        _say(f"memory: writing the first {per_task} events of {n} tasks")
        result["runs"][str(n)] = {"feed": write_feed(feed, events_path, n, per_task)}
        _say(f"memory: child process holding {n} active tasks ({profile}, dict store)")
        result["runs"][str(n)].update(run_child(feed, profile, timeout))
        _say(f"memory: child process holding {n} active tasks ({profile}, worker store)")
        result["worker_store"][str(n)] = {"feed": result["runs"][str(n)]["feed"],
                                          **run_child(feed, profile, timeout, "worker")}
        feed.unlink()
    if not million:
        first = result["runs"][str(n_tasks)]["active"]
        rate = first["events_per_second"] or 0
        est = round(1_000_000 * per_task / rate) if rate else None
        result["million"] = {"skipped": True,
                             "why": f"feeding 1,000,000 tasks x {per_task} events would take "
                                    f"about {est} s at the measured {rate:,.0f} events/s "
                                    "(use --million)"}
    if churn:
        result["churn"] = run_churn(events_path, work, profile, churn["events"],
                                    churn["active"], churn["retention"], timeout)
    return result


def summary(result: dict) -> str:
    lines = []
    runs = [(n, r, "dict store") for n, r in result["runs"].items()] + [
        (n, r, "worker store") for n, r in result.get("worker_store", {}).items()]
    for n, r, store in runs:
        a, e = r["active"], r["ended"]
        s = a["state_bytes"]
        lines.append(f"{int(n):,} active tasks ({result['profile']}, {store}, "
                     f"{r['feed']['events']:,} events): state bytes mean {s['mean']:,.0f} p99 "
                     f"{s['p99']:,}; RSS +{a['rss_delta'] / 2**20:,.1f} MiB, "
                     f"{a['rss_delta_per_task']:,.0f} bytes per task")
        lines.append(f"  after task.end for all: {e['right_after_end']['states']:,} compact "
                     f"states ({e['right_after_end']['state_bytes'] / 2**20:,.1f} MiB), "
                     f"{e['right_after_end']['registry_entries']:,} registry entries, RSS "
                     f"{e['right_after_end']['rss'] / 2**20:,.1f} MiB; after "
                     f"{e['retention_seconds']:,.0f} s of event time: "
                     f"{e['states_still_in_store']:,} states, "
                     f"{e['registry_entries_still_held']:,} registry entries; RSS "
                     f"{e['rss_after_ends'] / 2**20:,.1f} MiB")
    c = result.get("churn")
    if c:
        lines.append(f"churn: {c['events']:,} events, {c['active']} tasks active at once, "
                     f"{c['tasks_ended']:,} tasks ended, retention {c['retention_seconds']:,.0f}"
                     f" s passed {c['retention_periods_passed']} times "
                     f"({c['events_per_second']:,.0f} events/s)")
        head = f"  {'events':>9} {'event s':>8} {'states':>8} {'ended':>7} {'registry':>9} " \
               f"{'freed':>8} {'RSS MiB':>8}"
        lines.append(head)
        step = max(1, len(c["samples"]) // 10)
        for p in c["samples"][step - 1::step]:
            lines.append(f"  {p['events']:>9,} {p['event_seconds']:>8,.0f} {p['states']:>8,} "
                         f"{p['ended_states']:>7,} {p['registry_entries']:>9,} "
                         f"{p['freed']:>8,} {p['rss'] / 2**20:>8,.1f}")
        lines.append(f"  max states: first half {c['max_states_first_half']:,}, second half "
                     f"{c['max_states_second_half']:,} (expected plateau about "
                     f"{c['expected_plateau_states']:,}); RSS mid {c['rss_mid'] / 2**20:,.1f} "
                     f"MiB, end {c['rss_end'] / 2**20:,.1f} MiB")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--per-task", type=int, default=PER_TASK)
    parser.add_argument("--profile", default="full")
    parser.add_argument("--million", action="store_true", help="also 1,000,000 tasks")
    parser.add_argument("--no-churn", action="store_true", help="skip the churn run (d)")
    parser.add_argument("--churn-events", type=int, default=CHURN["events"])
    parser.add_argument("--churn-active", type=int, default=CHURN["active"],
                        help="tasks active at once in the churn trace")
    parser.add_argument("--churn-retention", type=float, default=CHURN["retention"],
                        help="retention seconds of the churn run's engine (event time)")
    parser.add_argument("--timeout", type=float, default=3600.0,
                        help="seconds allowed per child process")
    parser.add_argument("--store", choices=("dict", "worker"), default="dict",
                        help=argparse.SUPPRESS)   # (of a child process)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--churn-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(orjson.dumps(child(args.child, args.profile, args.store)).decode())
        return 0
    if args.churn_child:
        print(orjson.dumps(churn_child(args.churn_child, args.profile, args.churn_retention,
                                       SAMPLES)).decode())
        return 0
    from benchmarks.scale import import_dev_set
    churn = None if args.no_churn else {"events": args.churn_events,
                                        "active": args.churn_active,
                                        "retention": args.churn_retention}
    with tempfile.TemporaryDirectory(prefix="intentwatch-memory-") as tmp:
        events_path, _ = import_dev_set(Path(tmp))
        result = benchmark(events_path, Path(tmp), args.tasks, args.per_task, args.million,
                           args.profile, timeout=args.timeout, churn=churn)
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    print(summary(result), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
