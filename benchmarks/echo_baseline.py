"""The issue's baseline: a plain aiokafka process that reads the input topics, decodes each
record with orjson and produces one small record per event. It is what the worker's ratio is
measured against (the goal: half its rate), in the throughput run and, paced, in the latency
run (an echo: its output record carries the input's event id)."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import queue
import time

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

# Faust's producer defaults (faust-streaming 0.15.3): acks all, no linger. The baselines and
# the latency driver use the same.
PRODUCER = {"acks": "all", "linger_ms": 0}


async def _echo(cfg: dict, ready, stop) -> dict:
    consumer = AIOKafkaConsumer(*cfg["inputs"], bootstrap_servers=cfg["bootstrap"],
                                group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", metadata_max_age_ms=1000)
    producer = AIOKafkaProducer(bootstrap_servers=cfg["bootstrap"], **PRODUCER)
    await producer.start()
    await consumer.start()
    deadline = time.monotonic() + 60
    while len(consumer.assignment()) < cfg["partitions"] * len(cfg["inputs"]):
        if time.monotonic() > deadline:
            raise RuntimeError(f"echo: partitions not assigned: {consumer.assignment()}")
        await asyncio.sleep(0.05)
    ready.set()
    limit, n, first, last = cfg.get("limit"), 0, None, None
    cpu0 = time.process_time()
    try:
        while not stop.is_set() and (limit is None or n < limit):
            batch = await consumer.getmany(timeout_ms=100)
            for records in batch.values():
                for r in records:
                    event = orjson.loads(r.value)
                    eid = event.get("event_id") if isinstance(event, dict) else None
                    if first is None:
                        first = time.time()
                    await producer.send(cfg["output"], orjson.dumps(
                        {"event_id": eid, "partition": r.partition, "offset": r.offset}),
                        key=r.key)
                    n += 1
                    last = time.time()
        await producer.flush()
    finally:
        await consumer.stop()
        await producer.stop()
    return {"records": n, "first_consumed_wall": first, "last_sent_wall": last,
            "cpu_seconds": round(time.process_time() - cpu0, 2),
            "affinity": sorted(os.sched_getaffinity(0))}


def _echo_process(cfg: dict, ready, stop, results) -> None:
    """Entry point of the baseline process (multiprocessing, spawn)."""
    if cfg.get("cpu") is not None:
        os.sched_setaffinity(0, {cfg["cpu"]})
    try:
        results.put(asyncio.run(_echo(cfg, ready, stop)))
    except Exception as exc:  # report it to the parent rather than die silently
        results.put({"error": f"{type(exc).__name__}: {exc}"})
        raise


class EchoProcess:
    """The baseline in its own process: read `inputs`, orjson-decode each record, produce one
    small record per event to `output`; stops after `limit` records or when told."""

    def __init__(self, bootstrap: str, inputs: list[str], output: str, partitions: int,
                 cpu: int | None, limit: int | None = None):
        ctx = multiprocessing.get_context("spawn")
        self.ready, self.stop_event, self.results = ctx.Event(), ctx.Event(), ctx.Queue()
        cfg = {"bootstrap": bootstrap, "inputs": inputs, "output": output,
               "partitions": partitions, "cpu": cpu, "limit": limit}
        self.proc = ctx.Process(target=_echo_process, name="iw-bench-echo",
                                args=(cfg, self.ready, self.stop_event, self.results))

    def start(self, timeout: float = 90.0) -> None:
        self.proc.start()
        deadline = time.monotonic() + timeout
        while not self.ready.wait(0.2):
            if not self.proc.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"baseline process not ready: {self._result(0)}")

    @property
    def pid(self) -> int | None:
        return self.proc.pid

    def _result(self, timeout: float) -> dict:
        try:
            return self.results.get(timeout=timeout)
        except queue.Empty:
            return {"error": "no result from the baseline process"}

    def finish(self, timeout: float = 30.0) -> dict:
        self.stop_event.set()
        result = self._result(timeout)
        self.proc.join(timeout)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)
        return result
