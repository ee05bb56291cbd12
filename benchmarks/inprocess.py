"""Events per second through the engine, in process, on one core.

Three passes over the same prefix of the scaled trace (see benchmarks.scale), all held in memory
as raw lines first so that disk reads are not timed:

  decode only   monitor.contracts.decode (orjson + contract validation), no engine
  rules         Pipeline(build_engine("rules")).handle_batch: decode, engine, metrics
  full          Pipeline(build_engine("full")).handle_batch: the worker's default line-up

The engine passes feed records in batches of BATCH, as the worker's agent takes them from the
stream (INTENTWATCH_BATCH_MAX, default 500): metrics are written once per batch, decisions are
the same as one record at a time.

Each pass gets a new engine. Decisions are counted and dropped. Rates per tenth of the pass
show whether the rate changes as the store fills (ended tasks stay in it). No Kafka, no Faust:
this is the decision path alone, the ceiling of what one worker core can do.

    python -m benchmarks.inprocess --trace out/benchmarks/scaled.jsonl --events 200000
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections import Counter
from pathlib import Path

import orjson

from monitor.catalog import Catalog
from monitor.contracts import ContractError, decode
from monitor.importers.agentdojo import CATALOG_PATH
from monitor.pipeline import Pipeline
from monitor.profiles import build_engine

PASSES = ("decode_only", "rules", "full")
BATCH = 500   # records per Pipeline.handle_batch call, the worker's default INTENTWATCH_BATCH_MAX


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _decode_only(raw: bytes) -> tuple[list, ContractError | None]:
    try:
        decode(raw)
    except ContractError as err:
        return [], err
    return [], None


def run_pass(name: str, lines: list[bytes], catalog: Catalog) -> dict:
    """One timed pass; returns events/s overall and per tenth, verdicts, dead letters, store."""
    engine = None
    if name == "decode_only":
        def handle_batch(raws):
            return [_decode_only(raw) for raw in raws]
    else:
        engine = build_engine(name, catalog)
        pipeline = Pipeline(engine)

        def handle_batch(raws):
            return pipeline.handle_batch((raw, None) for raw in raws)
    n = len(lines)
    tenth = max(BATCH, n // 10 // BATCH * BATCH)
    marks: list[tuple[int, float]] = []
    verdicts: Counter = Counter()
    dead: Counter = Counter()
    decisions = 0
    gc.collect()
    started = last_say = time.perf_counter()
    for start in range(0, n, BATCH):
        for out, err in handle_batch(lines[start:start + BATCH]):
            if err is not None:
                dead[err.code] += 1
            decisions += len(out)
            for d in out:
                verdicts[d["verdict"]] += 1
        i = min(n, start + BATCH)
        if i % tenth == 0 or i == n:
            now = time.perf_counter()
            marks.append((i, now))
            if now - last_say >= 2 or i == n:
                last_say = now
                _say(f"  {name}: {i}/{n} events, {i / (now - started):,.0f} ev/s so far")
    wall = time.perf_counter() - started
    per_tenth, prev_i, prev_t = [], 0, started
    for i, t in marks:
        per_tenth.append(round((i - prev_i) / (t - prev_t), 1) if t > prev_t else None)
        prev_i, prev_t = i, t
    result = {"events": n, "seconds": round(wall, 3),
              "events_per_second": round(n / wall, 1) if wall > 0 else None,
              "us_per_event": round(1e6 * wall / n, 2) if n else None,
              "events_per_second_by_tenth": per_tenth,
              "decisions": decisions, "verdicts": dict(verdicts), "dead_letters": dict(dead)}
    if engine is not None:
        store = engine.store
        ended = sum(1 for t in store.values() if t["ended_at"] is not None)
        result["store"] = {"tasks": len(store), "ended_tasks_still_held": ended,
                           "registry_entries": len(engine.registry)}
    return result


def benchmark(trace: Path, n_events: int, catalog: Catalog | None = None,
              passes: tuple[str, ...] = PASSES) -> dict:
    catalog = catalog or Catalog.load(CATALOG_PATH)
    from benchmarks.scale import read_prefix
    lines = read_prefix(trace, n_events)
    types: Counter = Counter(orjson.loads(raw)["type"] for raw in lines)
    result: dict = {"trace": str(trace), "events": len(lines),
                    "bytes": sum(len(raw) + 1 for raw in lines),
                    "event_types": dict(types),
                    "how": "single process, one thread; lines read into memory before timing; "
                           f"each pass a new engine; Pipeline.handle_batch of {BATCH} records "
                           "(the worker's batch), with the Prometheus metrics updates the "
                           "worker makes; decisions counted, not written"}
    for name in passes:
        _say(f"in-process pass: {name} on {len(lines)} events")
        result[name] = run_pass(name, lines, catalog)
    if "full" in result and "decode_only" in result:
        d, f = result["decode_only"]["us_per_event"], result["full"]["us_per_event"]
        result["full_engine_us_per_event_beyond_decode"] = round(f - d, 2)
    if "rules" in result and "decode_only" in result:
        d, r = result["decode_only"]["us_per_event"], result["rules"]["us_per_event"]
        result["rules_engine_us_per_event_beyond_decode"] = round(r - d, 2)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.inprocess",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--trace", type=Path, required=True, help="scaled trace (JSON lines)")
    parser.add_argument("--events", type=int, default=200_000, help="prefix length")
    parser.add_argument("--pass", dest="passes", action="append", choices=PASSES,
                        help="run only this pass (repeatable; default all three)")
    args = parser.parse_args(argv)
    result = benchmark(args.trace, args.events, passes=tuple(args.passes or PASSES))
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
