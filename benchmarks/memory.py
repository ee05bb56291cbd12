"""Bytes of state per active task, and whether ended tasks' state is freed.

(a)+(b) A child process (so nothing else sits in its heap) builds a `full` engine with an
in-process dict store, reads its resident size (VmRSS), then feeds the first few events
(intent first, no task.end) of each of the scaled trace's first N copies through
Pipeline.handle, as if N tasks were active at once, and reads VmRSS again. It reports:
  - the orjson-serialized size of every task state in the store (mean, p50, p99, max), which is
    what a changelog-backed table holds per task, and of every delegation registry entry;
  - resident memory before and after, and the difference per task. The difference also holds
    the learned detectors' bounded caches (segment features, up to 65,536 entries) and model
    growth, so it is an upper bound of the store's own cost. This is the engine's store in a
    plain process, not a Faust worker (no RocksDB, no changelog buffers).
(c) Then it sends task.end for every task and reports how many states the store still holds,
their serialized bytes, and VmRSS after gc.collect().

    python -m benchmarks.memory --tasks 100000
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


def child(feed: Path, profile: str) -> dict:
    """Runs in the child process: feed, measure, end every task, measure again."""
    from monitor.catalog import Catalog
    from monitor.importers.agentdojo import CATALOG_PATH
    from monitor.pipeline import Pipeline
    from monitor.profiles import build_engine

    engine = build_engine(profile, Catalog.load(CATALOG_PATH))
    pipe = Pipeline(engine)
    gc.collect()
    before = rss_bytes()
    started = time.perf_counter()
    n, dead, last = 0, 0, started
    last_time: dict[str, float] = {}
    with open(feed, "rb") as f:
        for raw in f:
            raw = raw.rstrip(b"\n")
            _, err = pipe.handle(raw)
            dead += err is not None
            n += 1
            if n % 5000 == 0 and time.perf_counter() - last >= 2:
                last = time.perf_counter()
                _say(f"  memory: {n} events, {len(engine.store)} tasks")
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

    # (c) end every task: is its state freed?
    for tid, t in last_time.items():
        pipe.handle(orjson.dumps({"v": 1, "type": "task.end", "task_id": tid,
                                  "event_time": t + 1.0, "event_id": f"{tid}#end"}))
    gc.collect()
    ended_rss = rss_bytes()
    held = [t for t in store.values() if t["ended_at"] is not None]
    ended = {"tasks_ended": len(last_time), "states_still_in_store": len(held),
             "registry_entries_still_held": len(engine.registry),
             "state_bytes_still_held": sum(len(orjson.dumps(t)) for t in held),
             "freed": len(held) == 0, "rss_after_ends": ended_rss["rss"],
             "rss_delta_after_ends": ended_rss["rss"] - before["rss"]}
    return {"profile": profile, "pid": os.getpid(), "active": active, "ended": ended}


def run_child(feed: Path, profile: str, timeout: float) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.memory", "--child", str(feed),
           "--profile", profile]
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, timeout=timeout, check=True)
    return orjson.loads(proc.stdout)


def benchmark(events_path: Path, work: Path, n_tasks: int = 100_000,
              per_task: int = PER_TASK, million: bool = False, profile: str = "full",
              timeout: float = 600) -> dict:
    """events_path: the imported dev set (the scaled trace's templates)."""
    result: dict = {"profile": profile, "per_task_events": per_task,
                    "store": "in-process dict (the engine's default store)", "runs": {}}
    sizes = [n_tasks] + ([1_000_000] if million and n_tasks < 1_000_000 else [])
    for n in sizes:
        feed = work / f"feed-{n}.jsonl"
        _say(f"memory: writing the first {per_task} events of {n} tasks")
        result["runs"][str(n)] = {"feed": write_feed(feed, events_path, n, per_task)}
        _say(f"memory: child process holding {n} active tasks ({profile})")
        result["runs"][str(n)].update(run_child(feed, profile, timeout))
        feed.unlink()
    if not million:
        first = result["runs"][str(n_tasks)]["active"]
        rate = first["events_per_second"] or 0
        est = round(1_000_000 * per_task / rate) if rate else None
        result["million"] = {"skipped": True,
                             "why": f"feeding 1,000,000 tasks x {per_task} events would take "
                                    f"about {est} s at the measured {rate:,.0f} events/s "
                                    "(use --million)"}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--per-task", type=int, default=PER_TASK)
    parser.add_argument("--profile", default="full")
    parser.add_argument("--million", action="store_true", help="also 1,000,000 tasks")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(orjson.dumps(child(args.child, args.profile)).decode())
        return 0
    from benchmarks.scale import import_dev_set
    with tempfile.TemporaryDirectory(prefix="intentwatch-memory-") as tmp:
        events_path, _ = import_dev_set(Path(tmp))
        result = benchmark(events_path, Path(tmp), args.tasks, args.per_task, args.million,
                           args.profile)
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
