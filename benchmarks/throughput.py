"""Throughput of a process that writes one output topic: read the topic from the beginning
until the expected records have arrived, and take the rate from the records' own timestamps
(CreateTime, set by the producing process at send time), so its start-up is not timed."""

from __future__ import annotations

import time
from collections import Counter

import orjson
from aiokafka import AIOKafkaConsumer

from benchmarks.processes import CpuMeter

START_TIMEOUT = 180.0   # seconds to wait for the first output record of a process


async def collect(bootstrap: str, topic: str, expected: int, idle_seconds: float,
                  meter: CpuMeter | None = None, decode_decisions: bool = False,
                  start_timeout: float = START_TIMEOUT, grace: float = 1.0) -> dict:
    """Read `topic` from the beginning until `expected` records have arrived, or nothing new
    arrived for idle_seconds; then `grace` seconds more to count records beyond the expected
    ones (not in the rates). Rates come from the records' timestamps (CreateTime, ms)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                metadata_max_age_ms=1000)
    await consumer.start()
    stamps: list[int] = []
    arrivals: list[float] = []
    verdicts: Counter = Counter()
    ids: set[str] = set()
    duplicates = 0
    began = last_new = time.monotonic()
    stopped = "count"
    cpu = None
    extra = 0
    try:
        while len(stamps) < expected:
            batch = await consumer.getmany(timeout_ms=200)
            now = time.monotonic()
            for records in batch.values():
                if records and not stamps and meter is not None:
                    meter.begin()
                for r in records:
                    if decode_decisions:
                        d = orjson.loads(r.value)
                        verdicts[d["verdict"]] += 1
                        if d["decision_id"] in ids:
                            # Decided again (a task's end read before its intent): counted,
                            # not a new event's decision.
                            duplicates += 1
                            continue
                        ids.add(d["decision_id"])
                    stamps.append(r.timestamp)
                if records:
                    last_new = now
                    arrivals.append(now)
            if stamps and now - last_new > idle_seconds:
                stopped = f"idle {idle_seconds:g} s"
                break
            if not stamps and now - began > start_timeout:
                stopped = f"nothing within {start_timeout:g} s"
                break
        if meter is not None and stamps:
            cpu = meter.end()
        if stopped == "count" and len(stamps) > expected:  # the last batch went past it
            extra, stamps = len(stamps) - expected, stamps[:expected]
        until = time.monotonic() + grace
        while stopped == "count" and time.monotonic() < until:
            batch = await consumer.getmany(timeout_ms=100)
            extra += sum(len(records) for records in batch.values())
    finally:
        await consumer.stop()
    out: dict = {"records": len(stamps), "expected": expected, "stopped_on": stopped,
                 "records_beyond_expected": extra}
    if cpu is not None:
        out["cpu"] = cpu
    if decode_decisions:
        out["verdicts"] = dict(verdicts)
        out["duplicate_decision_ids"] = duplicates
    out.update(rates(stamps, arrivals))
    return out


def rates(stamps_ms: list[int], arrivals: list[float]) -> dict:
    """events/s first to last record timestamp, overall and per tenth of the records."""
    if len(stamps_ms) < 2:
        return {"events_per_second": None}
    ts = sorted(stamps_ms)
    span = (ts[-1] - ts[0]) / 1000
    n = len(ts)
    tenths = []
    for k in range(10):
        a, b = ts[k * (n - 1) // 10], ts[(k + 1) * (n - 1) // 10]
        count = (k + 1) * (n - 1) // 10 - k * (n - 1) // 10
        tenths.append(round(count / ((b - a) / 1000), 1) if b > a else None)
    out = {"seconds_first_to_last": round(span, 3),
           "events_per_second": round((n - 1) / span, 1) if span > 0 else None,
           "events_per_second_by_tenth": tenths,
           "first_record_timestamp_ms": ts[0], "last_record_timestamp_ms": ts[-1]}
    if len(arrivals) >= 2 and arrivals[-1] > arrivals[0]:
        out["events_per_second_as_read"] = round((n - 1) / (arrivals[-1] - arrivals[0]), 1)
    return out
