"""The performance benchmarks, one command: throughput, latency, memory and growth.

    intentwatch bench [--events N] [--tasks N] [--out DIR] [--quick] [--only PARTS]
    python -m benchmarks.bench ...

1. imports the AgentDojo dev set and writes a scaled trace of N events (benchmarks.scale);
2. inprocess: events/s of the full engine, the rules engine and decode only on it;
3. memory: bytes of state per active task and RSS of a process holding --tasks active tasks,
   whether ended tasks are freed after retention, and held states under churn;
4. broker: end to end on the real broker beside a plain aiokafka consumer and a Faust app that
   only decodes (the Faust floor), and latency at half the worker's rate beside an aiokafka
   echo (benchmarks.broker; needs Java and Maven, or --bootstrap);
5. growth: cost per event and memory as tasks and events per task grow (benchmarks.growth).
Prints a summary table (progress on stderr) and writes OUT/bench.json. --quick: tiny sizes.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson

from benchmarks import broker, growth, inprocess, memory, scale
from streams import local

DEFAULT_OUT = Path("out") / "benchmarks"
QUICK = {"events": 2_000, "tasks": 300, "active": 50}
PARTS = ("inprocess", "memory", "broker", "growth")


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _machine() -> dict:
    out = {"python": platform.python_version(), "platform": platform.platform(),
           "cpus": os.cpu_count()}
    try:
        with open("/proc/meminfo") as f:
            out["mem_total_kib"] = int(f.readline().split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return out


def _commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], check=False,
                              cwd=memory.ROOT,
                              capture_output=True, text=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def run(out_dir: Path, events: int, tasks: int, active: int, work: Path,
        runs_dir: Path = scale.DATASET / "runs", tasks_file: Path = scale.DATASET / "tasks.json",
        quick: bool = False, million: bool = False, keep_trace: bool = False,
        command: str | None = None, parts: tuple[str, ...] = PARTS,
        bootstrap: str | None = None) -> dict:
    started = time.monotonic()
    _say(f"importing {runs_dir}")
    events_path, summary = scale.import_dev_set(work, runs_dir, tasks_file)
    runs = scale.load_runs(events_path)
    trace = work / "scaled.jsonl"
    _say(f"scaled trace: {events} events, {active} tasks active at once")
    scaled = scale.write_scaled(trace, runs, events, active=active)
    del runs
    result: dict = {
        "benchmark": "performance", "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": _commit(), "command": command, "machine": _machine(), "quick": quick,
        "dev_set": {k: summary[k] for k in ("files", "imported", "events", "skipped")},
        "scaled_trace": scaled,
    }
    if "inprocess" in parts:
        result["inprocess"] = inprocess.benchmark(trace, events)
    if "memory" in parts:
        result["memory"] = memory.benchmark(events_path, work, tasks, million=million)
    if "broker" in parts:
        _say("broker: end to end and latency on the real broker")
        # Its own size (broker.DEFAULTS): the worker decides far fewer events/s than the
        # in-process passes, and the first events of the same trace are enough.
        result["broker"] = broker.benchmark(bootstrap, quick=quick, trace=trace,
                                            command=command)
    if "growth" in parts:
        sizes = growth.QUICK if quick else {"tasks": growth.TASKS, "per_task": growth.PER_TASK,
                                            "budget": growth.BUDGET}
        result["growth"] = growth.benchmark(sizes["tasks"], sizes["per_task"],
                                            budget=sizes["budget"], events_path=events_path)
    if keep_trace:
        out_dir.mkdir(parents=True, exist_ok=True)
        shutil.move(str(trace), out_dir / "scaled.jsonl")
        result["scaled_trace"]["path"] = str(out_dir / "scaled.jsonl")
    result["seconds"] = round(time.monotonic() - started, 1)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bench.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2)
                                         + b"\n")
    return result


def _mib(b) -> str:
    return f"{b / 2**20:,.1f} MiB"


def summary_table(result: dict) -> str:
    lines = []
    if "inprocess" in result:
        lines += _inprocess_table(result)
    if "memory" in result:
        lines += _memory_table(result["memory"])
    if "broker" in result:
        lines += [broker.summary_table(result["broker"]), ""]
    if "growth" in result:
        lines += [growth.summary_table(result["growth"]), ""]
    lines.append(f"total {result['seconds']} s")
    return "\n".join(lines)


def _inprocess_table(result: dict) -> list[str]:
    ip = result["inprocess"]
    title = (f"in-process throughput, one core, {ip['events']:,} events of the scaled trace "
             f"({result['scaled_trace']['active']} tasks active at once)")
    lines = [title, ""]
    head = f"{'pass':<14}{'events/s':>12}{'us/event':>11}{'seconds':>10}   by tenth (events/s)"
    lines += [head, "-" * len(head)]
    for name in inprocess.PASSES:
        r = ip[name]
        tenths = " ".join(f"{v:,.0f}" for v in r["events_per_second_by_tenth"] if v)
        lines.append(f"{name:<14}{r['events_per_second']:>12,.0f}{r['us_per_event']:>11.1f}"
                     f"{r['seconds']:>10.1f}   {tenths}")
    st = ip["full"]["store"]
    lines.append(f"store after the full pass: {st['tasks']:,} tasks, "
                 f"{st['ended_tasks_still_held']:,} of them ended and still held")
    lines.append("")
    return lines


def _memory_table(mem: dict) -> list[str]:
    lines = []
    for n, r in mem["runs"].items():
        a, e = r["active"], r["ended"]
        s, g = a["state_bytes"], a["registry_entry_bytes"]
        lines.append(f"memory, {int(n):,} active tasks ({mem['profile']} profile, "
                     f"{r['feed']['events']:,} events, up to {mem['per_task_events']} per task)")
        lines.append(f"  task state, orjson bytes: mean {s['mean']:,.0f}  p50 {s['p50']:,}  "
                     f"p99 {s['p99']:,}  max {s['max']:,}  total {_mib(s['total'])}")
        lines.append(f"  registry entry, orjson bytes: mean {g['mean']:,.0f}  p99 {g['p99']:,}"
                     f"  max {g['max']:,}")
        lines.append(f"  RSS {_mib(a['rss_before'])} before -> {_mib(a['rss_after'])} after: "
                     f"+{_mib(a['rss_delta'])}, {a['rss_delta_per_task']:,.0f} bytes per task")
        lines.append(f"  after task.end for all: {e['states_still_in_store']:,} states still "
                     f"in the store ({_mib(e['state_bytes_still_held'])}), "
                     f"{e['registry_entries_still_held']:,} registry entries; freed: "
                     f"{'yes' if e['freed'] else 'NO'}; RSS {_mib(e['rss_after_ends'])}")
    for n, r in mem.get("worker_store", {}).items():
        a = r["active"]
        lines.append(f"  the same {int(n):,} tasks in the worker's store (JSON bytes, "
                     f"{_mib(a['state_bytes']['total'])} of states): RSS "
                     f"+{_mib(a['rss_delta'])}, {a['rss_delta_per_task']:,.0f} bytes per task")
    if mem.get("million", {}).get("skipped"):
        lines.append(f"1,000,000 tasks: skipped ({mem['million']['why']})")
    lines.append("")
    return lines


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--events", type=int, default=None,
                   help="events of the scaled trace and of the in-process passes "
                        "(default 200000)")
    p.add_argument("--tasks", type=int, default=None,
                   help="active tasks held for the RSS measure (default 100000)")
    p.add_argument("--active", type=int, default=None,
                   help=f"tasks active at once in the scaled trace (default {scale.ACTIVE})")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help="where bench.json goes (default %(default)s)")
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    p.add_argument("--million", action="store_true",
                   help="also hold 1,000,000 active tasks (slow: about 20 minutes)")
    p.add_argument("--keep-trace", action="store_true", help="keep the trace in OUT")
    p.add_argument("--only", default=",".join(PARTS),
                   help="comma-separated parts to run (default all: %(default)s)")
    p.add_argument("--bootstrap", default=None,
                   help="a running broker for the broker part (default: start the local one)")
    p.add_argument("--runs-dir", type=Path, default=scale.DATASET / "runs")
    p.add_argument("--tasks-file", type=Path, default=scale.DATASET / "tasks.json")


def cmd_bench(args, settings=None) -> int:
    for path in (args.runs_dir, args.tasks_file):
        if not path.exists():
            print(f"bench: {path} not found", file=sys.stderr)
            return 2
    events = args.events or (QUICK["events"] if args.quick else 200_000)
    tasks = args.tasks or (QUICK["tasks"] if args.quick else 100_000)
    active = args.active or (QUICK["active"] if args.quick else scale.ACTIVE)
    parts = tuple(p for p in args.only.split(",") if p)
    unknown = set(parts) - set(PARTS)
    if unknown:
        print(f"bench: unknown part(s) {sorted(unknown)}; choose from {PARTS}", file=sys.stderr)
        return 2
    if "broker" in parts and not args.bootstrap and (missing := local.have_java_and_maven()):
        print(f"bench: the broker part needs {missing} (or --bootstrap, or --only without "
              "broker)", file=sys.stderr)
        return 2
    command = getattr(args, "command_line", None) or " ".join(["intentwatch", *sys.argv[1:]])
    with tempfile.TemporaryDirectory(prefix="intentwatch-bench-") as tmp:
        result = run(args.out, events, tasks, active, Path(tmp), args.runs_dir, args.tasks_file,
                     quick=args.quick, million=args.million, keep_trace=args.keep_trace,
                     command=command, parts=parts, bootstrap=args.bootstrap)
    print(summary_table(result))
    print(f"figures in {args.out / 'bench.json'}")
    return 0


def add_bench_parser(sub) -> None:
    """The `intentwatch bench` subcommand."""
    p = sub.add_parser("bench", help="throughput and memory per task on a scaled trace")
    add_arguments(p)
    p.set_defaults(func=cmd_bench)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench",
                                     description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    args.command_line = " ".join(["python -m benchmarks.bench",
                                  *(sys.argv[1:] if argv is None else argv)])
    return cmd_bench(args)


if __name__ == "__main__":
    sys.exit(main())
