"""The soak: a long mixed stream with hostile records through one real worker on the real
broker, and a count of what went where.

    python -m benchmarks.soak [--events 1000000] [--hostile 0.01] [--seed 7]
                              [--bootstrap HOST:PORT] [--json FILE]

The good events are the first N of a scaled trace (benchmarks.scale, as the broker benchmark
uses). Between them, with a seeded random source, hostile records drawn from
benchmarks.hostile (the property tests' generators) make up the --hostile fraction of all
records: each a good event of the trace turned bad (malformed JSON, deep nesting, 600 KiB
payloads, invalid UTF-8, wrong types, unknown versions, missing fields, wrong keys, no value),
sent to either input topic. Everything is pre-loaded, then one worker starts and reads it all.

Counted: records in; decisions by verdict; dead letters by reason (their header, and the
worker's intentwatch_dead_letters_total); hostile records that did not reach the dead letters
with their expected reason (must be 0: matched by a digest of their bytes); good events with no
decision (must be 0: matched by decision id), decisions that are not a good event's (must be
0), and decisions repeated under an id already seen (decided again: the worker read a task's
end before its intent, and decided its events again when the intent came; counted, allowed); the worker's exits and crashed agents in its log (must be 0); its RSS when ready
and at the end; wall times.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import secrets
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from benchmarks import scale
from benchmarks.broker import wait_ready
from benchmarks.broker_trace import Trace
from benchmarks.hostile import hostile_record
from benchmarks.processes import commit, log_warnings, machine
from monitor.config import Settings
from monitor.engine import _decision_id  # (the id each decision carries; one way to make it)
from monitor.signing import generate_key_pair
from streams import local
from streams.produce import ensure_topics, route
from tests import metrics_text

DEFAULT_JSON = Path("out") / "benchmarks" / "soak.json"


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _digest(value: bytes | None) -> bytes:
    return hashlib.blake2b(b"\x00" if value is None else b"\x01" + value,
                           digest_size=12).digest()


def mixed_records(lines: list[bytes], hostile: float, seed: int, settings: Settings):
    """(records [(topic, key, value)], expected decision ids, hostile Counter of (digest,
    reason), hostile kinds Counter). A hostile record follows a good one with probability
    hostile / (1 - hostile), so hostile records are that fraction of all records."""
    rng = random.Random(seed)
    after = hostile / (1 - hostile)
    records, decision_ids = [], set()
    expected: Counter = Counter()
    kinds: Counter = Counter()
    inputs = (settings.topic_intents, settings.topic_actions)
    for raw in lines:
        event = orjson.loads(raw)
        topic, key = route(raw, settings)
        records.append((topic, key, raw))
        decision_ids.add(_decision_id(event))
        if rng.random() < after:
            kind, value, bad_key, reason = hostile_record(rng, event)
            records.append((rng.choice(inputs), bad_key, value))
            expected[(_digest(value), reason)] += 1
            kinds[kind] += 1
    return records, decision_ids, expected, kinds


async def preload(bootstrap: str, records) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5,
                                enable_idempotence=True, max_request_size=2 * 1024 * 1024)
    await producer.start()
    try:
        pending = []
        for topic, key, value in records:
            pending.append(await producer.send(topic, value, key=key))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


async def read_outputs(bootstrap: str, settings: Settings, decision_ids: set[str],
                       expected: Counter, idle_seconds: float, proc) -> dict:
    """Read decisions and dead letters from the start until every expected one arrived, or
    nothing new arrived for idle_seconds; count them against what was sent."""
    consumer = AIOKafkaConsumer(settings.topic_decisions, settings.topic_dead_letters,
                                bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                metadata_max_age_ms=1000, max_partition_fetch_bytes=2 << 20)
    await consumer.start()
    missing_ids, missing_hostile = set(decision_ids), Counter(expected)
    verdicts, reasons, unexpected = Counter(), Counter(), Counter()
    decided_again = 0
    peak_rss, last_new = 0.0, time.monotonic()
    wanted_dead = sum(expected.values())
    try:
        while missing_ids or sum(reasons.values()) < wanted_dead:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            now = time.monotonic()
            for records in batch.values():
                for r in records:
                    last_new = now
                    if r.topic == settings.topic_decisions:
                        d = orjson.loads(r.value)
                        verdicts[d["verdict"]] += 1
                        if d["decision_id"] in missing_ids:
                            missing_ids.discard(d["decision_id"])
                        elif d["decision_id"] in decision_ids:
                            decided_again += 1
                        else:
                            unexpected["decision_not_of_a_good_event"] += 1
                        continue
                    reason = dict(r.headers).get("x-deadletter-reason", b"?").decode()
                    reasons[reason] += 1
                    match = (_digest(r.value), reason)
                    if missing_hostile[match] > 0:
                        missing_hostile[match] -= 1
                    else:
                        unexpected["dead_letter_not_a_hostile_record_or_wrong_reason"] += 1
            peak_rss = max(peak_rss, rss_mib(proc.pid) or 0.0)
            if now - last_new > idle_seconds or proc.poll() is not None:
                break
    finally:
        await consumer.stop()
    return {"decisions_by_verdict": dict(verdicts), "dead_letters_by_reason": dict(reasons),
            "good_events_without_decision": len(missing_ids),
            "hostile_not_dead_lettered_with_their_reason": sum(missing_hostile.values()),
            "decided_again": decided_again, "unexpected": dict(unexpected),
            "peak_rss_mib_sampled": peak_rss}


def dead_letter_metric(web_port: int) -> dict[str, float]:
    return {labels["reason"]: v for labels, v in
            metrics_text.samples(metrics_text.scrape(web_port), "intentwatch_dead_letters_total")}


def soak(bootstrap: str | None, events: int, hostile: float, seed: int = scale.SEED,
         active: int = scale.ACTIVE, partitions: int = 4, source: str = "auto",
         idle_seconds: float = 60.0, command: str | None = None) -> dict:
    started = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="iw-soak-"))
    result: dict = {"benchmark": "soak", "command": command, "commit": commit(),
                    "date": datetime.now(UTC).isoformat(timespec="seconds"),
                    "machine": machine(), "scratch": str(scratch)}
    broker_dir = None
    proc = None
    try:
        if bootstrap is None:
            broker_dir = scratch / "kafka"
            _say("starting the local Kafka broker ...")
            bootstrap = local.start_broker(broker_dir)
        prefix = f"soak-{int(time.time())}-{secrets.token_hex(3)}"
        topics = {f"topic_{k}": f"{prefix}.{k}" for k in
                  ("intents", "actions", "decisions", "alerts", "revocations", "dead_letters",
                   "acks")}
        settings = Settings(broker=f"kafka://{bootstrap}", partitions=partitions, **topics)
        asyncio.run(ensure_topics(settings, settings.topics()))
        asyncio.run(wait_ready(bootstrap, settings.topics(), partitions))

        t = time.monotonic()
        trace = Trace(source, None, active, seed)
        lines = trace.take(events)
        records, decision_ids, expected, kinds = mixed_records(lines, hostile, seed, settings)
        del lines
        n_hostile = sum(expected.values())
        result["input"] = {"good_events": len(decision_ids), "hostile_records": n_hostile,
                           "records": len(records), "hostile_fraction": hostile, "seed": seed,
                           "trace": trace.info, "hostile_by_kind": dict(kinds),
                           "hostile_expected_by_reason": dict(sum(
                               (Counter({r: n}) for (_, r), n in expected.items()),
                               Counter()))}
        result["generate_seconds"] = round(time.monotonic() - t, 1)
        _say(f"pre-loading {len(records)} records ({n_hostile} hostile) ...")
        t = time.monotonic()
        asyncio.run(preload(bootstrap, records))
        result["preload_seconds"] = round(time.monotonic() - t, 1)
        del records

        private, _ = generate_key_pair()
        (scratch / "signing.pem").write_bytes(private)
        web_port = local.free_port()
        env = local.worker_env(bootstrap, **topics, app_id=f"iw-{prefix}", fast_rebalance=1,
                               partitions=partitions, catalog=trace.catalog, web_port=web_port,
                               data_dir=scratch / "data", signing_key=scratch / "signing.pem")
        log = scratch / "worker.log"
        _say(f"worker (log {log}) ...")
        t = time.monotonic()
        proc = local.start_worker(env, log)
        local.wait_healthy(web_port, proc, log)
        rss_start = rss_mib(proc.pid)
        out = asyncio.run(read_outputs(bootstrap, settings, decision_ids, expected,
                                       idle_seconds, proc))
        out["worker_seconds"] = round(time.monotonic() - t, 1)
        alive = proc.poll() is None
        out.update(rss_mib_ready=rss_start, rss_mib_end=rss_mib(proc.pid) if alive else None,
                   worker_alive_at_end=alive,
                   worker_exits=0 if alive else 1,
                   dead_letters_metric=dead_letter_metric(web_port) if alive else None)
        with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/healthz", timeout=10) as r:
            out["healthz_at_end"] = orjson.loads(r.read())
        text = log.read_text(errors="replace")
        out["crashed_agents_in_log"] = text.count("crashed")
        out["tracebacks_in_log"] = text.count("Traceback")
        out["worker_log_warnings"] = log_warnings(log)
        result["output"] = out
    finally:
        if proc is not None:
            local.stop_worker(proc)
        if broker_dir is not None:
            local.stop_broker(broker_dir)
    result["wall_seconds"] = round(time.monotonic() - started, 1)
    o = result.get("output", {})
    result["ok"] = bool(o) and o["good_events_without_decision"] == 0 and \
        o["hostile_not_dead_lettered_with_their_reason"] == 0 and not o["unexpected"] and \
        o["worker_alive_at_end"] and o["crashed_agents_in_log"] == 0
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="good events")
    parser.add_argument("--hostile", type=float, default=0.01,
                        help="fraction of all records that are hostile (default 0.01)")
    parser.add_argument("--seed", type=int, default=scale.SEED)
    parser.add_argument("--active", type=int, default=scale.ACTIVE)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--source", choices=("auto", "agentdojo", "sample"), default="auto")
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--bootstrap", default=None)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args(argv)
    if not 0 <= args.hostile < 1 or args.events < 1:
        parser.error("--hostile must be in [0, 1) and --events at least 1")
    command = " ".join(["python -m benchmarks.soak", *(sys.argv[1:] if argv is None else argv)])
    result = soak(args.bootstrap, args.events, args.hostile, args.seed, args.active,
                  args.partitions, args.source, args.idle_seconds, command)
    blob = orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n"
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_bytes(blob)
    sys.stdout.write(blob.decode())
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
