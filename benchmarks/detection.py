"""Detection quality on the AgentDojo development set, beside the allowlist baseline.

    python -m benchmarks.detection [--runs-dir D] [--tasks T] [--out DIR] [--quick]

Imports the recorded runs (monitor.importers.agentdojo.import_runs) into a scratch folder, then
runs these evaluations (monitor.evaluation.evaluate; each one replays its trace once through the
engine profile and, in the same pass, through the allowlist baseline):

  full            the whole set in import order, profile "full" (per suite and per model too)
  shuffle seed N  the same runs in a shuffled run order (seeds 1, 2, 3): whole runs move, each
                  run's events stay together and in order. The learned detectors learn online,
                  so the order of the runs changes what they know when; this shows how much.
  suite S         each suite alone, with a fresh engine: its models only ever see that suite
  rules           profile "rules" (no learned detectors) on the whole set

It prints a summary table (progress goes to stderr) and writes OUT/detection.json. --quick keeps
an evenly spaced sample of QUICK_RUNS runs (every suite and model stays represented) for a smoke
test. No labels reach the engines: evaluate() joins them afterwards, by task id.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import orjson

from monitor.evaluation import evaluate
from monitor.importers.agentdojo import BASE_TIME, RUN_SPACING, import_runs

DATASET = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "agentdojo"
DEFAULT_OUT = Path("out") / "benchmarks"
SEEDS = (1, 2, 3)
QUICK_RUNS = 300
# The figures compared across evaluations (see monitor.evaluation for their definitions).
FIGURES = ("recall", "late_recall", "benign_revoke_rate", "alert_rate")
INFORMATIVE = ("failed_attack_revoke_rate", "injection_as_user_revoke_rate")


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- traces --------------------------------------------------------------------------------

def read_runs(events_path: Path) -> dict[str, list[bytes]]:
    """task id -> its event lines, in the order the trace holds them (runs in first-seen order)."""
    runs: dict[str, list[bytes]] = {}
    with open(events_path, "rb") as f:
        for raw in f:
            raw = raw.rstrip(b"\n")
            if raw:
                runs.setdefault(orjson.loads(raw)["task_id"], []).append(raw)
    return runs


def read_labels(labels_path: Path) -> list[dict]:
    with open(labels_path, "rb") as f:
        return [orjson.loads(line) for line in f if line.strip()]


def _retimed(lines: list[bytes], base: float) -> list[bytes]:
    """A run's events moved to start at `base`, keeping their spacing (times are synthetic)."""
    events = [orjson.loads(raw) for raw in lines]
    delta = base - events[0]["event_time"]
    for e in events:
        e["event_time"] += delta
    return [orjson.dumps(e) for e in events]


def write_trace(path: Path, runs: dict[str, list[bytes]], order: list[str],
                retime: bool = False) -> int:
    """Write the runs in `order` to path; with retime, run i starts at the importer's i-th hour,
    so event times keep increasing through the trace. Returns the number of event lines."""
    n = 0
    with open(path, "wb") as f:
        for i, task_id in enumerate(order):
            lines = runs[task_id]
            if retime:
                lines = _retimed(lines, BASE_TIME + i * RUN_SPACING)
            f.write(b"".join(raw + b"\n" for raw in lines))
            n += len(lines)
    return n


def write_labels(path: Path, labels: list[dict]) -> None:
    with open(path, "wb") as f:
        f.write(b"".join(orjson.dumps(label) + b"\n" for label in labels))


def shuffled(order: list[str], seed: int) -> list[str]:
    out = list(order)
    random.Random(seed).shuffle(out)
    return out


def quick_sample(labels: list[dict], n: int) -> list[dict]:
    """n labels evenly spaced through the import order (the import order is sorted by path:
    model, then suite, so the first n runs would be one model's one suite)."""
    if len(labels) <= n:
        return labels
    return [labels[i * len(labels) // n] for i in range(n)]


# --- evaluations ---------------------------------------------------------------------------

def _slim(block: dict) -> dict:
    """The figures, run counts and counts of one evaluate() block (no per-slice nesting)."""
    out = {k: block[k] for k in FIGURES + INFORMATIVE}
    out["runs"], out["counts"] = block["runs"], block["counts"]
    return out


def _with_baseline(block: dict) -> dict:
    out = _slim(block)
    out["baseline"] = _slim(block["baseline"])
    return out


def run_eval(name: str, events: Path, labels: Path, catalog, profile: str) -> dict:
    """One evaluate() call, timed; its figures beside the baseline's."""
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - last[0] >= 2:
            last[0] = now
            _say(f"  {name}: {done}/{total} events")

    started = time.monotonic()
    fig = evaluate(events, labels, catalog, profile, progress)
    wall = time.monotonic() - started
    lines = fig["events"]["lines"]
    out = _with_baseline(fig)
    out["profile"] = profile
    out["timing"] = {"seconds": round(wall, 2), "events": lines,
                     "events_per_second": round(lines / wall, 1) if wall > 0 else None,
                     "note": "one pass through the profile and the allowlist baseline together"}
    dead = fig["events"]["dead_letters"]
    out["dead_letters"] = dead
    out["labels"] = fig["labels"]
    out["notes"] = fig["notes"]
    if dead:
        _say(f"  WARNING {name}: {sum(dead.values())} lines not decided: {dead}")
    out["_per_suite"] = {k: _with_baseline(v) for k, v in fig["per_suite"].items()}
    out["_per_model"] = {k: _with_baseline(v) for k, v in fig["per_model"].items()}
    _say(f"  {name}: recall {_pct(out['recall'])}%, benign revoked "
         f"{_pct(out['benign_revoke_rate'])}% in {wall:.1f} s")
    return out


def spread(results: dict[str, dict]) -> dict:
    """Per figure, min and max over the results (engine and baseline), ignoring None."""
    def over(get: Callable[[dict], float | None]) -> dict:
        values = [v for v in map(get, results.values()) if v is not None]
        return {"min": min(values) if values else None, "max": max(values) if values else None}
    out = {k: over(lambda r, k=k: r[k]) for k in FIGURES + INFORMATIVE}
    out["baseline"] = {k: over(lambda r, k=k: r["baseline"][k]) for k in FIGURES + INFORMATIVE}
    return out


def benchmark(runs_dir: Path, tasks: Path, out_dir: Path, work: Path, quick: bool = False,
              catalog=None, command: str | None = None) -> dict:
    started = time.monotonic()
    _say(f"importing {runs_dir}")
    imported = work / "import"
    summary = import_runs(runs_dir, tasks, imported)
    _say(f"  {summary['imported']} runs, {summary['events']} events; skipped {summary['skipped']}")
    runs = read_runs(imported / "events.jsonl")
    labels = read_labels(imported / "labels.jsonl")
    labels = [label for label in labels if label["task_id"] in runs]

    if quick:
        labels = quick_sample(labels, QUICK_RUNS)
    order = [label["task_id"] for label in labels]  # import order
    base = work / "set"
    base.mkdir()
    events_path, labels_path = base / "events.jsonl", base / "labels.jsonl"
    n_events = write_trace(events_path, runs, order)
    write_labels(labels_path, labels)

    result: dict = {
        "benchmark": "detection",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": os.cpu_count()},
        "dataset": {"runs_dir": str(runs_dir), "tasks": str(tasks), "quick": quick,
                    "import": {k: summary[k] for k in ("files", "imported", "events", "by_kind",
                                                       "skipped", "harm", "seconds")},
                    "runs": len(order), "events": n_events,
                    "runs_by_kind": _count(labels, "kind"),
                    "runs_by_suite": _count(labels, "suite"),
                    "runs_by_model": _count(labels, "pipeline")},
        "figures": list(FIGURES), "informative_figures": list(INFORMATIVE),
    }

    # 1. the whole set in import order (per suite and per model come with it)
    _say("full profile, import order")
    full = run_eval("full", events_path, labels_path, catalog, "full")
    result["full"] = full
    full["per_suite"] = full.pop("_per_suite")
    full["per_model"] = full.pop("_per_model")

    # 2. order sensitivity: the same runs in shuffled run orders
    shuffles: dict[str, dict] = {}
    for seed in SEEDS:
        path = work / f"shuffle-{seed}.jsonl"
        write_trace(path, runs, shuffled(order, seed), retime=True)
        _say(f"full profile, shuffled run order (seed {seed})")
        res = run_eval(f"shuffle {seed}", path, labels_path, catalog, "full")
        res.pop("_per_suite"), res.pop("_per_model")
        shuffles[str(seed)] = res
        path.unlink()
    result["order_sensitivity"] = {
        "seeds": shuffles, "spread_over_seeds": spread(shuffles),
        "spread_with_import_order": spread({"import": full, **shuffles}),
        "how": "whole runs shuffled with random.Random(seed).shuffle; each run's events stay "
               "contiguous and in order; run i re-timed to start at the importer's i-th hour"}

    # 3. each suite alone, fresh engine: no cross-suite learning
    per_suite: dict[str, dict] = {}
    for suite in sorted({str(label["suite"]) for label in labels}):
        chosen = [label for label in labels if str(label["suite"]) == suite]
        folder = work / f"suite-{suite}"
        folder.mkdir()
        write_trace(folder / "events.jsonl", runs, [label["task_id"] for label in chosen])
        write_labels(folder / "labels.jsonl", chosen)
        _say(f"full profile, suite {suite} alone (fresh engine)")
        res = run_eval(f"suite {suite}", folder / "events.jsonl", folder / "labels.jsonl",
                       catalog, "full")
        res.pop("_per_suite")
        res["per_model"] = res.pop("_per_model")
        res["in_whole_set_run"] = full["per_suite"].get(suite)
        per_suite[suite] = res
    result["per_suite_fresh_engine"] = per_suite

    # 4. rules only: what the learned detectors add
    _say("rules profile (no learned detectors)")
    rules = run_eval("rules", events_path, labels_path, catalog, "rules")
    rules.pop("_per_suite")
    rules["per_model"] = rules.pop("_per_model")
    result["rules_only"] = rules

    # 5. per model, from the whole-set run
    result["per_model"] = full["per_model"]

    result["seconds"] = round(time.monotonic() - started, 1)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "detection.json").write_bytes(
        orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    return result


def _count(labels: list[dict], key: str) -> dict:
    out: dict[str, int] = {}
    for label in labels:
        out[str(label.get(key))] = out.get(str(label.get(key)), 0) + 1
    return dict(sorted(out.items()))


# --- summary -------------------------------------------------------------------------------

def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def _row(name: str, r: dict, timing: bool = True) -> str:
    b = r["baseline"]
    cells = "".join(f"{_pct(r[k]) + '/' + _pct(b[k]):>16}" for k in FIGURES)
    t = r.get("timing") if timing else None
    tail = f"{t['seconds']:>9.1f}{t['events_per_second']:>9.0f}" if t else ""
    return (f"{name:<34}{sum(r['runs'].values()):>6}"
            f"{r['counts']['successful_attacks_with_harmful_call']:>8}{cells}{tail}")


def summary_table(result: dict) -> str:
    head = (f"{'evaluation':<34}{'runs':>6}{'attacks':>8}" + "".join(
        f"{t:>16}" for t in ("recall", "late recall", "benign revoked", "benign alerted"))
        + f"{'seconds':>9}{'ev/s':>9}")
    title = ("detection quality: each cell is engine/allowlist baseline, % of runs; "
             "attacks = successful attacks with a harmful call")
    lines = [title, "", head, "-" * len(head)]
    lines.append(_row("full, import order", result["full"]))
    osens = result["order_sensitivity"]
    for seed, r in osens["seeds"].items():
        lines.append(_row(f"full, shuffled (seed {seed})", r))
    sp = osens["spread_over_seeds"]
    lines.append(f"{'  shuffles min..max':<48}" + "".join(
        f"{_pct(sp[k]['min']) + '..' + _pct(sp[k]['max']):>16}" for k in FIGURES))
    for suite, r in result["per_suite_fresh_engine"].items():
        lines.append(_row(f"suite {suite}, fresh engine", r))
        if r["in_whole_set_run"]:
            lines.append(_row(f"  suite {suite}, in whole-set run", r["in_whole_set_run"],
                              timing=False))
    lines.append(_row("rules only", result["rules_only"]))
    for model, r in result["per_model"].items():
        lines.append(_row(f"model {model}", r, timing=False))
    lines.append("")
    lines += [f"note: {n}" for n in result["full"]["notes"]]
    ds = result["dataset"]
    lines.append(f"{ds['runs']} runs, {ds['events']} events{' (quick sample)' if ds['quick'] else ''}"
                 f"; total {result['seconds']} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.detection",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs-dir", type=Path, default=DATASET / "runs",
                        help="AgentDojo runs tree (default %(default)s)")
    parser.add_argument("--tasks", type=Path, default=DATASET / "tasks.json",
                        help="AgentDojo tasks file (default %(default)s)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="where detection.json goes (default %(default)s)")
    parser.add_argument("--quick", action="store_true",
                        help=f"an evenly spaced sample of {QUICK_RUNS} runs (smoke test)")
    parser.add_argument("--keep-traces", action="store_true",
                        help="keep the imported and derived traces in OUT/traces")
    args = parser.parse_args(argv)
    command = " ".join(["python -m benchmarks.detection",
                        *(sys.argv[1:] if argv is None else argv)])
    for path in (args.runs_dir, args.tasks):
        if not path.exists():
            print(f"benchmarks.detection: {path} not found", file=sys.stderr)
            return 2
    if args.keep_traces:
        work = args.out / "traces"
        if work.exists():
            print(f"benchmarks.detection: {work} exists; remove it first", file=sys.stderr)
            return 2
        work.mkdir(parents=True)
        result = benchmark(args.runs_dir, args.tasks, args.out, work, args.quick,
                           command=command)
    else:
        with tempfile.TemporaryDirectory(prefix="intentwatch-detection-") as tmp:
            result = benchmark(args.runs_dir, args.tasks, args.out, Path(tmp), args.quick,
                               command=command)
    print(summary_table(result))
    print(f"figures in {args.out / 'detection.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
