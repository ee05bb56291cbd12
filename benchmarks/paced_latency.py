"""The latency driver: send events at a steady pace and time each one from just before its
send to the return of the getmany() that hands this same process its output record (both
instants time.perf_counter() of one process)."""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from benchmarks.echo_baseline import PRODUCER
from benchmarks.processes import CpuMeter
from monitor.config import Settings
from streams.produce import route

QUANTILES = (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("p99.9", 0.999))
DRAIN_TIMEOUT = 30.0    # seconds to wait for the last latency records after the last send


def quantile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank quantile of sorted samples."""
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


def summary_ms(seconds: list[float]) -> dict:
    if not seconds:
        return {"count": 0}
    ms = sorted(s * 1e3 for s in seconds)
    out: dict = {"count": len(ms)}
    out.update({name: round(quantile(ms, q), 3) for name, q in QUANTILES})
    out["max"] = round(ms[-1], 3)
    out["mean"] = round(sum(ms) / len(ms), 3)
    return out


def paced_items(lines: list[bytes], settings: Settings, warmup: int) -> list[tuple]:
    """(topic, key, raw, event id, timed) per line, routed like `intentwatch produce`. Timed:
    agent.action events after the first `warmup` lines."""
    items = []
    for i, raw in enumerate(lines):
        topic, key = route(raw, settings)
        event = orjson.loads(raw)
        eid = event.get("event_id") if isinstance(event, dict) else None
        timed = i >= warmup and eid is not None and event.get("type") == "agent.action"
        items.append((topic, key, raw, eid, timed))
    return items


async def paced(bootstrap: str, items: list[tuple], rate: float, outputs: dict[str, str],
                partitions: int, meter: CpuMeter | None = None,
                drain_timeout: float = DRAIN_TIMEOUT) -> dict:
    """Send `items` at `rate` events/s; time each timed event from send to the first record
    carrying its event id on outputs["decisions"] (and, for a decision with a revoke command,
    on outputs.get("revocations"))."""
    out_topics = list(outputs.values())
    decisions_topic, revocations_topic = outputs["decisions"], outputs.get("revocations")
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="latest")
    await consumer.start()
    tps = [TopicPartition(t, p) for t in out_topics for p in range(partitions)]
    consumer.assign(tps)
    await consumer.seek_to_end(*tps)
    for tp in tps:
        await consumer.position(tp)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **PRODUCER)
    await producer.start()
    timed_ids = {eid for _, _, _, eid, timed in items if timed}
    sent: dict[str, float] = {}
    lags: list[float] = []
    decided: dict[str, float] = {}
    verdict_of: dict[str, str] = {}
    needs_command: set[str] = set()
    commanded: dict[str, float] = {}
    span: list[float] = []

    async def send_all() -> None:
        t0 = time.perf_counter() + 0.05
        for i, (topic, key, raw, eid, timed) in enumerate(items):
            target = t0 + i / rate
            delay = target - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            now = time.perf_counter()
            if timed:
                sent[eid] = now
            lags.append(now - target)
            await producer.send(topic, raw, key=key)
            if i == 0:
                span.append(now)
        span.append(time.perf_counter())
        await producer.flush()

    sender = asyncio.ensure_future(send_all())
    if meter is not None:
        meter.begin()
    drain_until = None
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=50)
            now = time.perf_counter()
            for tp, records in batch.items():
                for r in records:
                    v = orjson.loads(r.value)
                    eid = v.get("event_id") if isinstance(v, dict) else None
                    if eid not in timed_ids:
                        continue
                    if tp.topic == revocations_topic:
                        commanded.setdefault(eid, now)
                    elif tp.topic == decisions_topic and eid not in decided:
                        decided[eid] = now
                        if "verdict" in v:
                            verdict_of[eid] = v["verdict"]
                        if v.get("command") or v.get("cascade"):
                            needs_command.add(eid)
            if sender.done():
                sender.result()  # raise a send error here
                if drain_until is None:
                    drain_until = now + drain_timeout
                if (len(decided) == len(timed_ids) and needs_command <= commanded.keys()) \
                        or now > drain_until:
                    break
    finally:
        if not sender.done():
            sender.cancel()
        await producer.stop()
        await consumer.stop()
    cpu = meter.end() if meter is not None else None
    lag_ms = sorted(x * 1e3 for x in lags)
    result: dict = {
        "events_sent": len(items), "timed_actions": len(timed_ids),
        "rate_asked": round(rate, 1),
        "rate_achieved": round((len(items) - 1) / (span[-1] - span[0]), 1)
        if len(span) == 2 and span[-1] > span[0] else None,
        "send_lag_ms": {"p50": round(quantile(lag_ms, 0.5), 3),
                        "p99": round(quantile(lag_ms, 0.99), 3),
                        "max": round(lag_ms[-1], 3)} if lag_ms else {},
        "decision": summary_ms([decided[e] - sent[e] for e in decided]),
        "missing": len(timed_ids) - len(decided),
    }
    if verdict_of:
        result["verdicts"] = dict(Counter(verdict_of.values()))
    if revocations_topic is not None:
        got = [e for e in needs_command if e in commanded]
        result["revoke_command"] = summary_ms([commanded[e] - sent[e] for e in got])
        result["decision_of_violations"] = summary_ms([decided[e] - sent[e] for e in got])
        result["revoke_commands_missing"] = len(needs_command) - len(got)
    if cpu is not None:
        result["cpu"] = cpu
    return result
