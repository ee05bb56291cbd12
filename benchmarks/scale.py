"""A scaled trace: the imported AgentDojo dev set replayed as many distinct tasks.

Each copy of a run is a new task: fresh task id, credential id and event ids (generated call
ids, which embed the task id, are renamed too; the models' own call ids are kept, they only need
to be unique within a task). K copies are active at once and their events are interleaved
round-robin: in round r, each of the K slots emits the next event of its copy, and a slot whose
copy has ended starts the next copy. Event times keep each run's own spacing (the importer's
1 s steps): a copy started in round r0 in slot s starts at BASE + r0 + s/K, so times never go
down through the trace. Runs are taken epoch by epoch, each epoch a seeded shuffle of all runs.

The trace is streamed to disk as JSON lines and cut at exactly the target number of events (so
the copies active at the cut are truncated). Deterministic for a given dev set, seed and K.

    python -m benchmarks.scale --events 1000000 --out out/benchmarks/scaled.jsonl
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson

from monitor.importers.agentdojo import import_runs

DATASET = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "agentdojo"
SEED = 7
ACTIVE = 1000              # K: copies active at once
BASE = 1_800_000_000.0     # start of the scaled trace's event time


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def import_dev_set(work: Path, runs_dir: Path = DATASET / "runs",
                   tasks: Path = DATASET / "tasks.json") -> tuple[Path, dict]:
    """Import the dev set into work/import; returns (events.jsonl, import summary)."""
    out = work / "import"
    summary = import_runs(runs_dir, tasks, out)
    return out / "events.jsonl", summary


def load_runs(events_path: Path) -> list[list[dict]]:
    """The runs of an imported trace, each its events in trace order (runs in first-seen order)."""
    runs: dict[str, list[dict]] = {}
    with open(events_path, "rb") as f:
        for raw in f:
            if raw.strip():
                e = orjson.loads(raw)
                runs.setdefault(e["task_id"], []).append(e)
    return list(runs.values())


def copy_ids(seed: int, n: int) -> tuple[str, str]:
    """(task id, credential id) of copy n: opaque like the importer's, distinct per copy."""
    task_id = "sc-" + hashlib.sha256(f"{seed}:{n}".encode()).hexdigest()[:16]
    return task_id, "cred-" + hashlib.sha256(task_id.encode()).hexdigest()[:12]


def copy_run(run: list[dict], n: int, seed: int, start: float) -> list[dict]:
    """Copy n of a run: new ids, times moved so the run starts at `start` (spacing kept)."""
    old_task = run[0]["task_id"]
    task_id, cred = copy_ids(seed, n)
    declared = (run[0].get("credentials") or []) if run[0]["type"] == "task.intent" else []
    creds = {c: cred if i == 0 else f"{cred}-{i}" for i, c in enumerate(declared)}
    t0 = run[0]["event_time"]
    out = []
    for e in run:
        e = dict(e)
        e["task_id"] = task_id
        e["event_time"] = start + (e["event_time"] - t0)
        if isinstance(e.get("expires_at"), (int, float)):  # a deadline moves with its run
            e["expires_at"] = start + (e["expires_at"] - t0)
        if e.get("event_id"):
            e["event_id"] = e["event_id"].replace(old_task, task_id, 1)
        call_id = e.get("call_id")
        if isinstance(call_id, str) and call_id.startswith(old_task):
            e["call_id"] = task_id + call_id[len(old_task):]
        if e.get("credential_id") in creds:
            e["credential_id"] = creds[e["credential_id"]]
        if e["type"] == "task.intent" and e.get("credentials"):
            e["credentials"] = [creds.get(c, c) for c in e["credentials"]]
        out.append(e)
    return out


def copies(runs: list[list[dict]], seed: int = SEED) -> Iterator[tuple[int, list[dict]]]:
    """(copy number, template run) forever: epoch after epoch, each a seeded shuffle."""
    rng = random.Random(seed)
    n = 0
    while True:
        order = list(range(len(runs)))
        rng.shuffle(order)
        for i in order:
            yield n, runs[i]
            n += 1


def scaled_events(runs: list[list[dict]], seed: int = SEED,
                  active: int = ACTIVE) -> Iterator[dict]:
    """The scaled trace's events, forever (the caller stops it), K copies interleaved."""
    source = copies(runs, seed)
    slots: list[Iterator[dict] | None] = [None] * active
    r = 0
    while True:
        for s in range(active):
            it = slots[s]
            e = next(it, None) if it is not None else None
            if e is None:  # the slot is free: start the next copy here
                n, run = next(source)
                it = iter(copy_run(run, n, seed, BASE + r + s / active))
                slots[s] = it
                e = next(it)
            yield e
        r += 1


def task_events(runs: list[list[dict]], n_tasks: int, per_task: int,
                seed: int = SEED) -> Iterator[list[dict]]:
    """The first `per_task` events (intent first, never task.end) of each of the scaled
    trace's first n_tasks copies: the same task ids as the trace, as if n_tasks were active."""
    source = copies(runs, seed)
    for _ in range(n_tasks):
        n, run = next(source)
        events = [e for e in copy_run(run, n, seed, BASE + n) if e["type"] != "task.end"]
        yield events[:per_task]


def write_scaled(path: Path, runs: list[list[dict]], n_events: int, seed: int = SEED,
                 active: int = ACTIVE, progress: bool = True) -> dict:
    """Stream n_events of the scaled trace to path (JSON lines). Returns a summary."""
    started = time.monotonic()
    path.parent.mkdir(parents=True, exist_ok=True)
    tasks: set[str] = set()
    ends = 0
    written = 0
    size = 0
    last = started
    buf: list[bytes] = []
    with open(path, "wb") as f:
        for e in scaled_events(runs, seed, active):
            if written >= n_events:
                break
            line = orjson.dumps(e) + b"\n"
            buf.append(line)
            size += len(line)
            written += 1
            if e["type"] == "task.intent":
                tasks.add(e["task_id"])
            elif e["type"] == "task.end":
                ends += 1
            if len(buf) >= 10_000:
                f.write(b"".join(buf))
                buf.clear()
                now = time.monotonic()
                if progress and now - last >= 2:
                    last = now
                    _say(f"  scale: {written}/{n_events} events")
        f.write(b"".join(buf))
    return {"path": str(path), "events": written, "bytes": size, "tasks": len(tasks),
            "tasks_ended": ends, "active": active, "seed": seed,
            "template_runs": len(runs), "template_events": sum(len(r) for r in runs),
            "seconds": round(time.monotonic() - started, 2)}


def read_prefix(path: Path, n: int) -> list[bytes]:
    """The first n lines of a trace, newline stripped."""
    out = []
    with open(path, "rb") as f:
        for raw in f:
            if len(out) >= n:
                break
            raw = raw.rstrip(b"\n")
            if raw:
                out.append(raw)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=Path("out/benchmarks/scaled.jsonl"))
    parser.add_argument("--active", type=int, default=ACTIVE, help="copies active at once")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--runs-dir", type=Path, default=DATASET / "runs")
    parser.add_argument("--tasks", type=Path, default=DATASET / "tasks.json")
    args = parser.parse_args(argv)
    import tempfile
    with tempfile.TemporaryDirectory(prefix="intentwatch-scale-") as tmp:
        events_path, _ = import_dev_set(Path(tmp), args.runs_dir, args.tasks)
        runs = load_runs(events_path)
    summary = write_scaled(args.out, runs, args.events, args.seed, args.active)
    print(orjson.dumps(summary).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
