"""Throughput and memory as the number of active tasks and the events per task grow.

Does the cost of an event stay constant when the engine holds more tasks, and when each task
has a longer history? A grid of cells, active tasks x events per task (default 1k/10k/100k x
4/16/64; cells over --budget events are skipped, with an estimate of their time). Each cell
runs in a child process of its own (so nothing else sits in its heap), after a warm-up of
2,000 events of other tasks on a throwaway engine:

  - N tasks of the scaled AgentDojo trace (benchmarks.scale: copies of the dev set's runs with
    fresh ids, in a seeded order), all active at once: no task.end, so none is freed;
  - fed round-robin like the scaled trace: round r holds event r of every task (round 0 the
    intents), times nearly monotone (task i starts at BASE + i/N, then its run's own 1 s
    steps). A task with more events than its run repeats its run's actions with fresh event
    and call ids and later times (runs have 7 events at the median, 92 at most); runs without
    any action are not used;
  - each event goes through Pipeline.handle (decode, contract checks, engine, metrics tally) of
    a `full` engine (the worker's line-up; --profile rules for the rules alone); only that call
    is timed, per round; building the event is not;
  - afterwards: the orjson size of every task state (what a changelog-backed table holds per
    task) and of every registry entry, and VmRSS before and after the feed (after
    gc.collect()); RSS per task also holds the learned detectors' bounded caches and the
    retention index, so it is an upper bound of the store's own cost.

Constant cost means: us/event about the same down a column (more tasks) and along a row (more
events per task), and us/event of the late rounds about that of the early ones.

    python -m benchmarks.growth [--tasks 1000,10000,100000] [--per-task 4,16,64]
                                [--budget 450000] [--profile full] [--json out.json] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson

from benchmarks import bench, memory, scale

TASKS = (1_000, 10_000, 100_000)
PER_TASK = (4, 16, 64)
BUDGET = 450_000          # events per cell at most (a cell over it is skipped)
QUICK = {"tasks": (50, 200), "per_task": (4, 16), "budget": 10_000}
WARMUP = (250, 8)         # tasks x events fed to a throwaway engine before each cell


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Template:
    """One run as a task of any length: its intent, then its actions again and again."""

    __slots__ = ("actions", "intent", "run", "span")

    def __init__(self, run: list[dict]):
        self.run = run
        self.intent = run[0]
        self.actions = [e for e in run if e["type"] == "agent.action"]
        self.span = self.actions[-1]["event_time"] - self.intent["event_time"] + 1.0

    def event(self, r: int) -> dict:
        """Event r of the task (0: the intent), in the template's own ids and times."""
        if r == 0:
            return self.intent
        rep, j = divmod(r - 1, len(self.actions))
        e = self.actions[j]
        if rep == 0:
            return e
        e = dict(e, event_time=e["event_time"] + rep * self.span)
        e["event_id"] = f"{e['event_id']}~{rep}"
        if isinstance(e.get("call_id"), str):
            e["call_id"] = f"{e['call_id']}~{rep}"
        return e


def feed_events(runs: list[list[dict]], n_tasks: int, per_task: int, seed: int = scale.SEED):
    """(round, event) of n_tasks tasks x per_task events, round-robin. A generator: the
    events are built one at a time (nothing is held but the templates)."""
    usable = [r for r in runs if r[0]["type"] == "task.intent"
              and any(e["type"] == "agent.action" for e in r)]
    source = scale.copies(usable, seed)
    prepared: dict[int, Template] = {}
    tasks = []
    for _ in range(n_tasks):
        n, run = next(source)
        tpl = prepared.get(id(run))
        if tpl is None:
            tpl = prepared[id(run)] = Template(run)
        tasks.append((n, tpl))
    for r in range(per_task):
        for i, (n, tpl) in enumerate(tasks):
            start = scale.BASE + i / n_tasks
            yield r, scale.copy_run([tpl.intent, tpl.event(r)], n, seed, start)[r > 0]


def cell_child(events_path: Path, n_tasks: int, per_task: int, profile: str) -> dict:
    """Runs in the child process: one cell of the grid."""
    from monitor.catalog import Catalog
    from monitor.importers.agentdojo import CATALOG_PATH
    from monitor.pipeline import Pipeline
    from monitor.profiles import build_engine

    runs = scale.load_runs(events_path)
    catalog = Catalog.load(CATALOG_PATH)
    # Warm-up on a throwaway engine (other task ids): first-call costs and the module-level
    # text caches are paid before the measure, as in a worker that has been running a while.
    warm = Pipeline(build_engine(profile, catalog))
    for _, e in feed_events(runs, WARMUP[0], WARMUP[1], seed=scale.SEED + 1):
        warm.handle(orjson.dumps(e))
    del warm
    engine = build_engine(profile, catalog)
    pipe = Pipeline(engine)
    events = feed_events(runs, n_tasks, per_task)
    first = next(events)  # builds the templates before the first measure
    gc.collect()
    before = memory.rss_bytes()
    per_round = [0.0] * per_task
    counts = [0] * per_task
    decisions = dead = 0
    clock = time.perf_counter
    started = last = clock()
    n = 0
    for r, e in _chain(first, events):
        raw = orjson.dumps(e)
        t0 = clock()
        out, err = pipe.handle(raw)
        per_round[r] += clock() - t0
        counts[r] += 1
        decisions += len(out)
        dead += err is not None
        n += 1
        if n % 5000 == 0 and clock() - last >= 5:
            last = clock()
            _say(f"    {n_tasks} x {per_task}: {n}/{n_tasks * per_task} events")
    wall = clock() - started
    handle_seconds = sum(per_round)
    gc.collect()
    after = memory.rss_bytes()
    state = memory.size_stats([len(orjson.dumps(t)) for t in engine.store.values()])
    registry = memory.size_stats([len(orjson.dumps(t)) for t in engine.registry.values()])
    us = [round(1e6 * s / c, 1) if c else None for s, c in zip(per_round, counts, strict=True)]
    actions = us[1:]
    early = actions[: min(3, len(actions))]
    late = actions[-max(1, len(actions) // 4):]
    return {"tasks": n_tasks, "per_task": per_task, "profile": profile, "events": n,
            "decisions": decisions, "dead_letters": dead,
            "tasks_in_store": len(engine.store), "handle_seconds": round(handle_seconds, 3),
            "wall_seconds": round(wall, 2),
            "events_per_second": round(n / handle_seconds, 1) if handle_seconds else None,
            "us_per_event": round(1e6 * handle_seconds / n, 1) if n else None,
            "us_per_event_by_round": us,
            "us_per_event_early_rounds": _mean(early), "us_per_event_late_rounds": _mean(late),
            "state_bytes": state, "registry_entry_bytes": registry,
            "rss_before": before["rss"], "rss_after": after["rss"], "peak": after["peak"],
            "rss_delta": after["rss"] - before["rss"],
            "rss_per_task": round((after["rss"] - before["rss"]) / n_tasks, 1)}


def _chain(first, rest):
    yield first
    yield from rest


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return round(sum(values) / len(values), 1) if values else None


def run_cell(events_path: Path, n_tasks: int, per_task: int, profile: str,
             timeout: float) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.growth", "--child", str(events_path),
           "--tasks", str(n_tasks), "--per-task", str(per_task), "--profile", profile]
    proc = subprocess.run(cmd, cwd=memory.ROOT, stdout=subprocess.PIPE, timeout=timeout,
                          check=True)
    return orjson.loads(proc.stdout)


def benchmark(tasks: tuple[int, ...] = TASKS, per_task: tuple[int, ...] = PER_TASK,
              profile: str = "full", budget: int = BUDGET, events_path: Path | None = None,
              runs_dir: Path = scale.DATASET / "runs",
              tasks_file: Path = scale.DATASET / "tasks.json",
              timeout: float = 3600.0) -> dict:
    """The grid; returns {"cells": [...], "skipped": [...], ...}. events_path: an imported dev
    set (else runs_dir and tasks_file are imported into a temporary folder)."""
    started = time.monotonic()
    result: dict = {"benchmark": "growth", "date": datetime.now(UTC).isoformat(timespec="seconds"),
                    "commit": bench._commit(), "machine": bench._machine(),
                    "profile": profile, "tasks": list(tasks), "per_task": list(per_task),
                    "budget": budget, "cells": [], "skipped": []}
    with tempfile.TemporaryDirectory(prefix="intentwatch-growth-") as tmp:
        if events_path is None:
            _say(f"growth: importing {runs_dir}")
            events_path, _ = scale.import_dev_set(Path(tmp), runs_dir, tasks_file)
        rate = None  # us/event of the largest cell run so far, for the estimates
        for n in tasks:
            for k in per_task:
                events = n * k
                if events > budget:
                    est = round(events * rate / 1e6) if rate else None
                    result["skipped"].append({"tasks": n, "per_task": k, "events": events,
                                              "estimated_seconds": est})
                    _say(f"growth: {n} tasks x {k} events: skipped ({events} events > budget)")
                    continue
                _say(f"growth: {n} tasks x {k} events ({events} events, {profile})")
                load = os.getloadavg()[0]
                cell = run_cell(Path(events_path), n, k, profile, timeout)
                # Other processes on the machine slow a cell down: say how busy it was.
                cell["load_average_1min"] = [round(load, 2), round(os.getloadavg()[0], 2)]
                result["cells"].append(cell)
                rate = cell["us_per_event"]
                _say(f"  {cell['us_per_event']} us/event, state "
                     f"{cell['state_bytes'].get('mean')} bytes/task, RSS "
                     f"{cell['rss_per_task']} bytes/task")
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


def summary_table(result: dict) -> str:
    cells = result["cells"]
    lines = [(f"growth: {result['profile']} profile, all tasks active at once, one child "
              "process per cell; us/event = Pipeline.handle only"), ""]
    head = (f"{'tasks':>8} {'ev/task':>8} {'events':>9} {'us/event':>9} {'x ref':>6} "
            f"{'early':>7} {'late':>7} {'state B/task':>13} {'p99':>7} {'RSS B/task':>11} "
            f"{'load':>5}")
    lines += [head, "-" * len(head)]
    ref = {}  # us/event of the smallest task count, per events per task
    for c in sorted(cells, key=lambda c: (c["per_task"], c["tasks"])):
        ref.setdefault(c["per_task"], c["us_per_event"])
    for c in cells:
        base = ref.get(c["per_task"])
        ratio = c["us_per_event"] / base if base else None
        s = c["state_bytes"]
        lines.append(f"{c['tasks']:>8,} {c['per_task']:>8} {c['events']:>9,} "
                     f"{c['us_per_event']:>9.1f} {_fmt(ratio, '.2f'):>6} "
                     f"{_fmt(c['us_per_event_early_rounds'], '.1f'):>7} "
                     f"{_fmt(c['us_per_event_late_rounds'], '.1f'):>7} "
                     f"{_fmt(s.get('mean'), ',.0f'):>13} {_fmt(s.get('p99'), ','):>7} "
                     f"{c['rss_per_task']:>11,.0f} "
                     f"{_fmt(max(c.get('load_average_1min') or [None]), '.1f'):>5}")
    for s in result["skipped"]:
        est = f"about {s['estimated_seconds']:,} s" if s["estimated_seconds"] else "unknown"
        lines.append(f"{s['tasks']:>8,} {s['per_task']:>8} {s['events']:>9,}   skipped "
                     f"(over the budget of {result['budget']:,} events; {est})")
    lines += ["", ("x ref: us/event over that of the fewest tasks with the same events per "
                   "task; early: rounds 1-3 (actions), late: last quarter of the rounds; "
                   "load: 1-minute load average at the start or end of the cell, the higher"),
              f"total {result['seconds']} s"]
    return "\n".join(lines)


def _fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x.replace("_", "")) for x in text.split(",") if x.strip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.growth",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=_ints, default=None,
                        help="active task counts, comma-separated (default 1000,10000,100000)")
    parser.add_argument("--per-task", type=_ints, default=None,
                        help="events per task, comma-separated (default 4,16,64)")
    parser.add_argument("--budget", type=int, default=None,
                        help=f"skip cells of more events than this (default {BUDGET})")
    parser.add_argument("--profile", default="full", choices=("full", "rules"))
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per cell")
    parser.add_argument("--runs-dir", type=Path, default=scale.DATASET / "runs")
    parser.add_argument("--tasks-file", type=Path, default=scale.DATASET / "tasks.json")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        (n,), (k,) = args.tasks, args.per_task
        print(orjson.dumps(cell_child(args.child, n, k, args.profile)).decode())
        return 0
    for path in (args.runs_dir, args.tasks_file):
        if not path.exists():
            print(f"growth: {path} not found", file=sys.stderr)
            return 2
    quick = QUICK if args.quick else {"tasks": TASKS, "per_task": PER_TASK, "budget": BUDGET}
    result = benchmark(args.tasks or quick["tasks"], args.per_task or quick["per_task"],
                       args.profile, args.budget or quick["budget"], runs_dir=args.runs_dir,
                       tasks_file=args.tasks_file, timeout=args.timeout)
    result["quick"] = args.quick
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    print(summary_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
