"""End to end on the real Kafka broker: throughput and latency of one worker, each beside a plain
aiokafka baseline measured in the same run on the same broker.

    python -m benchmarks.broker [--events N] [--rate-fraction F]
                                [--latency-seconds S | --latency-events N] [--quick]
                                [--bootstrap HOST:PORT] [--json FILE]

1. Throughput. The input topics (intents, actions; fresh names per run) are pre-loaded with the
   first N events of a scaled trace (benchmarks.scale: the AgentDojo dev set replayed as many
   distinct tasks, K active at once; routed and keyed like `intentwatch produce`).
   - Baseline: a plain aiokafka process pinned to one core (the worker's core) reads both topics
     from offset 0, decodes every record with orjson and produces one small record per event to
     an output topic (acks=all, linger 0: Faust's producer defaults).
   - Then ONE `intentwatch worker` pinned to the same core consumes the same topics from offset
     0 (fresh app id, so a fresh consumer group and empty task table).
   Each rate is (records - 1) / (last - first record timestamp) of its output topic (the
   decisions topic for the worker, the echo topic for the baseline): CreateTime, taken by the
   producing process at send time, so start-up is not timed. The reader stops when the expected
   count has arrived (the worker emits exactly one decision per valid event once every held
   action's intent has arrived; see `expected_decisions`) or when nothing new arrived for
   --idle-seconds, and says which.
2. Latency. At --rate-fraction (default 0.5) of the worker's rate from 1, this process produces
   the trace's next events at a steady pace (all event types, as a live stream would carry
   them) to the same worker, which keeps its state from 1. Timed are the agent.action events
   after a warm-up: from just before `AIOKafkaProducer.send` of the event to the return of the
   `getmany` that hands this process its decision (a consumer without group, positioned at the
   end of the decisions and revocations topics before the run); for violations also to the
   revoke command (first command carrying the event's id) on the revocations topic. Both
   instants are `time.perf_counter()` of this one process. Then the worker is stopped and the
   baseline runs: a plain aiokafka echo process on the same core, fed the same events at the
   same rate on fresh topics, timed from send to its echo record being readable.

The broker is started here (deploy/kafka/kafka-local.sh, pinned to the other cores) unless
--bootstrap names a running one. This process runs on the other cores too. Prints progress on
stderr, a summary table on stdout, and writes the figures as JSON (--json, default
out/benchmarks/broker.json). --quick: tiny sizes for a smoke test (well under a minute on a
running broker).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import math
import multiprocessing
import os
import platform
import queue
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from benchmarks import scale
from monitor.config import Settings
from monitor.contracts import ContractError, decode
from monitor.importers.agentdojo import CATALOG_PATH
from monitor.signing import generate_key_pair
from monitor.state import MAX_PENDING
from streams import local
from streams.produce import ensure_topics, produce, route

DEFAULT_JSON = Path("out") / "benchmarks" / "broker.json"
SAMPLE_TRACE = local.ROOT / "monitor" / "data" / "sample_trace.jsonl"
SAMPLE_CATALOG = local.ROOT / "monitor" / "data" / "sample_catalog.json"
DEFAULTS = {"events": 50_000, "latency_seconds": 30.0, "warmup_seconds": 3.0,
            "active": scale.ACTIVE, "idle_seconds": 15.0}
QUICK = {"events": 1_500, "latency_seconds": 3.0, "warmup_seconds": 1.0, "active": 50,
         "idle_seconds": 10.0}
QUANTILES = (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("p99.9", 0.999))
# Faust's producer defaults (faust-streaming 0.15.3): acks all, no linger. The baselines and
# the latency driver use the same.
PRODUCER = {"acks": "all", "linger_ms": 0}
START_TIMEOUT = 180.0   # seconds to wait for the first output record of a process
DRAIN_TIMEOUT = 30.0    # seconds to wait for the last latency records after the last send


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- machine, commit, processes ---------------------------------------------------------------
def machine() -> dict:
    out: dict = {"platform": platform.platform(), "python": platform.python_version(),
                 "cpus": os.cpu_count(), "load_avg_at_start": os.getloadavg()}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                out["cpu_model"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                out["mem_total_mib"] = round(int(line.split()[1]) / 1024)
    return out


def commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=local.ROOT,
                              capture_output=True, text=True, check=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=local.ROOT, capture_output=True, text=True, check=True,
                               timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def dirty_files() -> list[str]:
    """Tracked files changed since the commit: the code measured is not the commit alone."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                             cwd=local.ROOT, capture_output=True, text=True, check=True,
                             timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line[3:] for line in out.splitlines() if line.strip()]


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of a process, all its threads (None if it is gone)."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def find_broker_pid(bootstrap: str) -> int | None:
    """The pid of a local kafka.Kafka process listening on the bootstrap's port (a broker of
    deploy/kafka/kafka-local.sh on this machine), so its CPU can be measured; else None."""
    port = bootstrap.rsplit(":", 1)[-1]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
            if b"kafka.Kafka" not in args:
                continue
            props = Path(args[args.index(b"kafka.Kafka") + 1].decode()).read_text()
        except (OSError, IndexError, UnicodeDecodeError):
            continue
        for line in props.splitlines():
            if line.startswith("listeners=") and f":{port}," in line + ",":
                return int(entry.name)
    return None


def thread_affinity(pid: int) -> list[str]:
    """The distinct CPU lists the threads of a process may run on (from /proc)."""
    lists = set()
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/task/{tid}/status").read_text().splitlines():
                    if line.startswith("Cpus_allowed_list:"):
                        lists.add(line.split(":", 1)[1].strip())
    return sorted(lists)


def run_queue_wait_seconds(pid: int | None) -> float | None:
    """Seconds the threads of a process have spent runnable but waiting for a CPU (the sum of
    /proc/PID/task/*/schedstat's second field; threads that have exited are not counted)."""
    if pid is None:
        return None
    total, seen = 0, False
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[1])
                seen = True
    return total / 1e9 if seen else None


def machine_busy_seconds() -> float | None:
    """CPU seconds spent busy (not idle, not waiting on I/O) by the whole machine so far."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds of some processes between two instants, as a share of one core; and of
    the whole machine, so that load from processes outside the benchmark shows."""

    def __init__(self, pids: dict[str, int | None]):
        self.pids = {k: v for k, v in pids.items() if v is not None}
        self.start: dict[str, float | None] = {}
        self.t0 = 0.0

    def _sample(self) -> dict[str, float | None]:
        now: dict[str, float | None] = {k: cpu_seconds(p) for k, p in self.pids.items()}
        now["measuring_process"] = time.process_time()
        now["machine"] = machine_busy_seconds()
        for k, p in self.pids.items():
            now["runq:" + k] = run_queue_wait_seconds(p)
        return now

    def begin(self) -> None:
        self.t0 = time.monotonic()
        self.start = self._sample()

    def end(self) -> dict:
        wall = time.monotonic() - self.t0
        now = self._sample()
        out: dict = {"wall_seconds": round(wall, 3)}
        for k, v in now.items():
            s = self.start.get(k)
            if k.startswith("runq:") or v is None or s is None or wall <= 0:
                continue
            out[k] = {"cpu_seconds": round(v - s, 2), "cores_busy": round((v - s) / wall, 3)}
            w0, w1 = self.start.get("runq:" + k), now.get("runq:" + k)
            if w0 is not None and w1 is not None:
                # share of the time one of its threads was runnable but had no CPU
                out[k]["waiting_for_cpu"] = round((w1 - w0) / wall, 3)
        if "machine" in out:
            ours = sum(v["cpu_seconds"] for k, v in out.items()
                       if k not in ("machine", "wall_seconds"))
            out["other_processes_cores_busy"] = round(
                max(0.0, out["machine"]["cpu_seconds"] - ours) / wall, 3)
        return out


async def wait_ready(bootstrap: str, topics: list[str], partitions: int) -> None:
    """Wait until every partition of `topics` answers ListOffsets (a new topic's partitions
    can refuse produce requests for a moment after it is created)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.end_offsets([TopicPartition(t, p) for t in topics
                                    for p in range(partitions)])
    finally:
        await consumer.stop()


def log_warnings(log_path: Path) -> dict:
    """WARNING and ERROR lines of a worker log, counted by their text without numbers."""
    counts: Counter = Counter()
    with contextlib.suppress(OSError):
        for line in log_path.read_text(errors="replace").splitlines():
            for level in ("[WARNING]", "[ERROR]"):
                if level in line:
                    text = line.split(level, 1)[1].strip()
                    counts[level.strip("[]") + " " + re.sub(r"\d+", "N", text)[:90]] += 1
    return dict(counts.most_common(10))


def start_pinned_worker(env: dict, log_path: Path, cpu: int) -> subprocess.Popen:
    """`intentwatch worker` like streams.local.start_worker, on one CPU (every thread)."""
    cmd = [sys.executable, "-m", "streams.cli", "worker"]
    pin = None
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", str(cpu), *cmd]
    else:
        def pin() -> None:
            os.sched_setaffinity(0, {cpu})
    with open(log_path, "ab") as log:
        return subprocess.Popen(cmd, env=env, cwd=str(local.ROOT), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=pin)  # noqa: PLW1509 (single-threaded here)


# -- the trace -------------------------------------------------------------------------------
class Trace:
    """Events of a scaled trace, taken in order: generated in process from the AgentDojo dev set
    (or, without it, from the bundled sample trace), or read from a file written by
    `python -m benchmarks.scale`."""

    def __init__(self, source: str = "auto", path: Path | None = None,
                 active: int = scale.ACTIVE, seed: int = scale.SEED):
        self.file = None
        self.info: dict = {}
        if path is not None:
            self.file = open(path, "rb")  # noqa: SIM115 (closed by close())
            self.info.update(source="file", path=str(path))
            self.catalog = CATALOG_PATH
            self._events: Iterator[bytes] = (raw.rstrip(b"\n") for raw in self.file
                                             if raw.strip())
            return
        if source == "auto":
            source = "agentdojo" if (scale.DATASET / "runs").is_dir() else "sample"
        if source == "agentdojo":
            with tempfile.TemporaryDirectory(prefix="iw-broker-import-") as tmp:
                _say(f"importing the AgentDojo dev set from {scale.DATASET} ...")
                events_path, _ = scale.import_dev_set(Path(tmp))
                runs = scale.load_runs(events_path)
            self.catalog = CATALOG_PATH
        elif source == "sample":
            runs = scale.load_runs(SAMPLE_TRACE)
            self.catalog = SAMPLE_CATALOG
        else:
            raise ValueError(f"unknown trace source {source!r}")
        self.info.update(source=source, seed=seed, active=active, template_runs=len(runs),
                         template_events=sum(len(r) for r in runs))
        self._events = (orjson.dumps(e) for e in scale.scaled_events(runs, seed, active))

    def take(self, n: int) -> list[bytes]:
        return list(itertools.islice(self._events, n))

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def expected_decisions(lines: list[bytes]) -> dict:
    """How many decision records a worker emits for these records once it has read them all.

    Every valid event settles exactly one decision: an intent, a credential event and a task.end
    at once; an action at once if its task's intent has been seen, else when the intent arrives
    (intents and actions travel on different topics, so this happens), when the task ends
    without one, or when more than MAX_PENDING actions wait. Actions of a task whose intent is
    not among the records, and that do not overflow, stay held. Invalid records are
    dead-lettered and decide nothing. Exact when every task's intent is among the records (true
    of a scaled trace's prefix: each copy starts with its intent)."""
    valid = invalid = 0
    intents: set[str] = set()
    ended: set[str] = set()
    actions: Counter = Counter()
    for raw in lines:
        try:
            event = decode(raw)
        except ContractError:
            invalid += 1
            continue
        valid += 1
        if event["type"] == "task.intent":
            intents.add(event["task_id"])
        elif event["type"] == "task.end":
            ended.add(event["task_id"])
        elif event["type"] == "agent.action":
            actions[event["task_id"]] += 1
    held = sum(min(n, MAX_PENDING) for t, n in actions.items() if t not in intents)
    unsure = sum(1 for t in actions if t not in intents and t in ended)
    return {"valid": valid, "dead_letters": invalid, "held_without_intent": held,
            "decisions": valid - held, "exact": unsure == 0 and held == 0}


# -- throughput ------------------------------------------------------------------------------
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
                    stamps.append(r.timestamp)
                    if decode_decisions:
                        d = orjson.loads(r.value)
                        verdicts[d["verdict"]] += 1
                        if d["decision_id"] in ids:
                            duplicates += 1
                        ids.add(d["decision_id"])
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


# -- the plain aiokafka baseline process -----------------------------------------------------
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


# -- latency ---------------------------------------------------------------------------------
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


# -- the whole benchmark ---------------------------------------------------------------------
def _topics(prefix: str) -> dict[str, str]:
    return {f"topic_{k}": f"{prefix}.{k}" for k in
            ("intents", "actions", "decisions", "alerts", "revocations", "dead_letters", "acks")}


def _share(cpu: dict | None, name: str, what: str = "cores_busy") -> float | None:
    return ((cpu or {}).get(name) or {}).get(what)


def _cpu_cost(run: dict, name: str, events_key: str = "records") -> None:
    """Add the process's CPU milliseconds per event over the measured window."""
    spent = ((run.get("cpu") or {}).get(name) or {}).get("cpu_seconds")
    if spent is not None and run.get(events_key):
        run["cpu_ms_per_event"] = round(1e3 * spent / run[events_key], 4)


def _pct(v: float | None) -> str:
    return "?" if v is None else f"{v:.0%}"


def _others(cpu: dict | None) -> str:
    other = (cpu or {}).get("other_processes_cores_busy")
    if other is None:
        return ""
    if other >= 0.25:
        return (f" Processes outside this benchmark kept {other:.2f} cores busy meanwhile "
                f"(shared machine): this figure is lower than a quiet machine would give.")
    return f" Other processes: {other:.2f} cores busy meanwhile."


def _broker_starved(cpu: dict | None) -> str:
    wait = _share(cpu, "broker", "waiting_for_cpu")
    if wait is None or wait < 0.5:
        return ""
    return (f" The broker's threads waited for a CPU {wait:.2f} thread-seconds per second "
            f"(it has the non-worker core(s), shared with this process): the broker side "
            f"bounds this figure too.")


def limits(result: dict) -> dict:
    """Short notes on what bounds each figure, from the CPU shares measured alongside."""
    e2e, notes = result["end_to_end"], {}
    w, b = e2e["worker"], e2e["baseline"]
    wc, bc = _share(w.get("cpu"), "worker"), _share(b.get("cpu"), "baseline")
    wq = _share(w.get("cpu"), "worker", "waiting_for_cpu") or 0.0
    bq = _share(b.get("cpu"), "baseline", "waiting_for_cpu") or 0.0
    broker_w, broker_b = _share(w.get("cpu"), "broker"), _share(b.get("cpu"), "broker")
    full = sum(n for k, n in result.get("worker_log", {}).items() if "producer buffer full" in k)
    broker = f", the broker {_pct(broker_w)}" if broker_w is not None else ""
    text = (f"From first to last decision the worker ran {_pct(wc)} of the time and waited "
            f"for a CPU {_pct(wq)} of the time{broker}; "
            f"{w.get('cpu_ms_per_event', '?')} ms of CPU per event. ")
    if wc is not None and wc + wq >= 0.85:
        text += ("It wanted its core all along: CPU-bound. The figure is the per-event cost "
                 "of the worker's path (Faust stream and table, the engine with every "
                 "detector, JSON of state and decisions, a decision and a changelog record "
                 "produced per event, plus alerts and commands)"
                 + (", and the share of its core that other processes took" if wq >= 0.1
                    else "") + ".")
    else:
        text += ("Not CPU-bound: the worker waited, on Faust's producer (its sends and table "
                 "changelog writes wait for broker acks"
                 + (f"; its log has {full} 'producer buffer full' warnings" if full else "")
                 + ") or on fetches.")
    if not (wc is not None and wc + wq >= 0.85):
        text += _broker_starved(w.get("cpu"))
    notes["worker_throughput"] = text + _others(w.get("cpu"))
    broker = f", the broker {_pct(broker_b)}" if broker_b is not None else ""
    text = (f"The baseline ran {_pct(bc)} of the time and waited for a CPU {_pct(bq)}"
            f"{broker}; {b.get('cpu_ms_per_event', '?')} ms of CPU per event. ")
    if bc is not None and bc + bq >= 0.85:
        text += ("CPU-bound: aiokafka's per-record consume and produce path and orjson"
                 + (", and the share of its core that other processes took" if bq >= 0.1
                    else "") + ".")
    else:
        text += ("Not CPU-bound: it waited on the broker (fetch and produce round trips; "
                 "the broker shares the other core(s) with this measuring process).")
    if (b.get("seconds_first_to_last") or 0) < 2:
        text += " The run lasted under 2 s: too short for a steady rate."
    notes["baseline_throughput"] = text + _broker_starved(b.get("cpu")) + _others(b.get("cpu"))
    lat = result.get("latency")
    if lat and "worker" in lat and "baseline" in lat:
        lw, lb = lat["worker"], lat["baseline"]
        ms = [x.get("cpu_ms_per_event") for x in (lw, lb)]
        text = (
            "Both sides pay the same round trips through the broker: this process's produce "
            "(acks all), the consumer's fetch, its produce, this process's fetch. The echo "
            "baseline shows what they cost here; the rest of the worker's figure is its own: "
            "per-event work, waiting behind events already queued, Faust's producer buffer "
            "and commits, model snapshots. ")
        if ms[0] is not None:
            text += (f"Paced, the worker spent {ms[0]} ms of CPU per event against "
                     f"{w.get('cpu_ms_per_event', '?')} ms when it ran flat out on the "
                     f"pre-loaded topic (smaller batches cost more per event), and was busy "
                     f"{_pct(_share(lw.get('cpu'), 'worker'))} of the time. ")
        mp = _share(lw.get("cpu"), "measuring_process")
        bw = _share(lw.get("cpu"), "broker", "waiting_for_cpu")
        if mp is not None:
            text += (f"This process (driver and reader) used {_pct(mp)} of a core beside the "
                     f"broker" + (f", whose threads waited for a CPU {bw:.2f} thread-seconds "
                                  f"per second" if bw is not None else "") + ". ")
        notes["latency"] = text.strip() + _others(lw.get("cpu"))
    return notes


def benchmark(bootstrap: str | None = None, *, events: int | None = None,
              rate_fraction: float = 0.5, rate: float | None = None,
              latency_seconds: float | None = None, latency_events: int | None = None,
              warmup_seconds: float | None = None, quick: bool = False,
              trace: Path | None = None, source: str = "auto", active: int | None = None,
              seed: int = scale.SEED, partitions: int = 4, worker_cpu: int = 0,
              idle_seconds: float | None = None, latency: bool = True,
              keep_dir: Path | None = None, command: str | None = None) -> dict:
    """Run benchmarks 1 (throughput) and 2 (latency) and return the figures.

    bootstrap: a running broker (host:port); None starts the local one for the run. rate:
    paced rate of the latency runs in events/s (default rate_fraction times the worker's
    measured rate). latency_events overrides latency_seconds. quick: small defaults."""
    sizes = QUICK if quick else DEFAULTS
    events = events or sizes["events"]
    latency_seconds = latency_seconds or sizes["latency_seconds"]
    warmup_seconds = sizes["warmup_seconds"] if warmup_seconds is None else warmup_seconds
    active = active or sizes["active"]
    idle_seconds = idle_seconds or sizes["idle_seconds"]
    if events < 2 or not 0 < rate_fraction <= 1:
        raise ValueError("events must be at least 2 and rate_fraction in (0, 1]")
    all_cpus = sorted(os.sched_getaffinity(0))
    if worker_cpu not in all_cpus:
        raise ValueError(f"CPU {worker_cpu} is not available (this process may use {all_cpus})")
    others = set(all_cpus) - {worker_cpu} or {worker_cpu}
    started = time.monotonic()
    result: dict = {
        "benchmark": "broker", "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit(), "uncommitted_changes_in": dirty_files(), "command": command, "machine": machine(), "quick": quick,
        "placement": {"worker_and_baselines_cpu": worker_cpu,
                      "measuring_process_cpus": sorted(others)},
    }
    scratch = Path(tempfile.mkdtemp(prefix="iw-broker-bench-"))
    broker_dir = None
    proc = None
    echo = None
    source_trace = None
    old_affinity = os.sched_getaffinity(0)
    try:
        # This process, and the broker it starts, stay off the worker's core.
        os.sched_setaffinity(0, others)
        broker_pid = None
        if bootstrap is None:
            broker_dir = scratch / "kafka"
            _say("starting the local Kafka broker ...")
            bootstrap = local.start_broker(broker_dir)
            with contextlib.suppress(OSError, ValueError):
                broker_pid = int((broker_dir / "pid").read_text().strip())
            result["placement"]["broker"] = {
                "started_here": True,
                "cpus": thread_affinity(broker_pid) if broker_pid else "unknown"}
        else:
            broker_pid = find_broker_pid(bootstrap)
            result["placement"]["broker"] = {
                "started_here": False, "pid_found": broker_pid is not None,
                "cpus": thread_affinity(broker_pid) if broker_pid else "unknown"}
        result["bootstrap"] = bootstrap

        source_trace = Trace(source, trace, active, seed)
        catalog = source_trace.catalog
        prefix = f"bench-{int(time.time())}-{secrets.token_hex(3)}"
        topics = _topics(prefix)
        settings = Settings(broker=f"kafka://{bootstrap}", partitions=partitions, **topics)
        baseline_out = f"{prefix}.baseline-echo"
        asyncio.run(ensure_topics(settings, [*settings.topics(), baseline_out]))
        asyncio.run(wait_ready(bootstrap, [*settings.topics(), baseline_out], partitions))

        # -- 1. throughput ---------------------------------------------------------------
        _say(f"scaled trace: {events} events ({active} tasks active at once)")
        lines = source_trace.take(events)
        if len(lines) < events:
            raise ValueError(f"the trace has only {len(lines)} events, {events} asked")
        expected = expected_decisions(lines)
        _say(f"pre-loading {len(lines)} events into {topics['topic_intents']} and "
             f"{topics['topic_actions']} ...")
        t = time.monotonic()
        counts = asyncio.run(produce([(0, raw) for raw in lines], settings))
        preload_s = time.monotonic() - t
        result["trace"] = dict(source_trace.info, catalog=str(catalog), events=len(lines),
                               bytes=sum(len(raw) + 1 for raw in lines),
                               event_types=dict(Counter(orjson.loads(r)["type"]
                                                        for r in lines)))
        e2e: dict = {"events": len(lines), "per_topic": counts, "partitions": partitions,
                     "expected": expected,
                     "preload_seconds": round(preload_s, 2)}
        result["end_to_end"] = e2e

        _say(f"baseline: plain aiokafka read + orjson + one produce per event, on CPU "
             f"{worker_cpu} ...")
        echo = EchoProcess(bootstrap, [topics["topic_intents"], topics["topic_actions"]],
                           baseline_out, partitions, worker_cpu, limit=len(lines))
        echo.start()
        meter = CpuMeter({"baseline": echo.pid, "broker": broker_pid})
        base = asyncio.run(collect(bootstrap, baseline_out, len(lines), idle_seconds, meter))
        base["process"] = echo.finish()
        _cpu_cost(base, "baseline")
        echo = None
        e2e["baseline"] = base
        _say(f"  baseline: {base['records']} records, {base['events_per_second']} events/s")

        keys_dir = scratch / "keys"
        keys_dir.mkdir()
        private, _ = generate_key_pair()
        (keys_dir / "signing.pem").write_bytes(private)
        web_port = local.free_port()
        env = local.worker_env(bootstrap, **topics, app_id=f"iw-{prefix}", fast_rebalance=1,
                               partitions=partitions, catalog=catalog, web_port=web_port,
                               data_dir=scratch / "data", signing_key=keys_dir / "signing.pem")
        log = scratch / "worker.log"
        _say(f"worker: one `intentwatch worker` on CPU {worker_cpu} (log {log}) ...")
        t_start = time.monotonic()
        proc = start_pinned_worker(env, log, worker_cpu)
        local.wait_healthy(web_port, proc, log)
        healthy_s = round(time.monotonic() - t_start, 1)
        result["placement"]["worker_threads_cpus"] = thread_affinity(proc.pid)
        meter = CpuMeter({"worker": proc.pid, "broker": broker_pid})
        work = asyncio.run(collect(bootstrap, topics["topic_decisions"],
                                   expected["decisions"], idle_seconds, meter,
                                   decode_decisions=True))
        work["healthy_after_seconds"] = healthy_s
        _cpu_cost(work, "worker")
        work["start_to_last_decision_seconds"] = round(time.monotonic() - t_start, 1)
        if proc.poll() is not None:
            raise RuntimeError(f"the worker exited: {log.read_text(errors='replace')[-3000:]}")
        e2e["worker"] = work
        _say(f"  worker: {work['records']} decisions, {work['events_per_second']} events/s")
        if work["events_per_second"] and base["events_per_second"]:
            e2e["ratio_worker_to_baseline"] = round(
                work["events_per_second"] / base["events_per_second"], 4)
        e2e["how"] = (
            "Input topics pre-loaded before either process starts. Baseline first, then the "
            "worker, each alone on the same CPU. events/s = (records - 1) / (last - first "
            "CreateTime) of its output topic (decisions for the worker, one echo record per "
            "event for the baseline); the reader stops at the expected count or after "
            f"{idle_seconds:g} s without a new record.")

        # -- 2. latency ------------------------------------------------------------------
        if latency:
            rate_from = "given"
            if rate is None:
                if not work["events_per_second"]:
                    raise RuntimeError("no worker rate to pace the latency run at")
                rate = rate_fraction * work["events_per_second"]
                rate_from = f"{rate_fraction:g} x the worker's measured events/s"
            warmup = int(rate * warmup_seconds)
            measured = latency_events or max(1, int(rate * latency_seconds))
            more = source_trace.take(warmup + measured)
            lat: dict = {"rate": round(rate, 1), "rate_from": rate_from,
                         "warmup_events": warmup, "events": len(more) - warmup}
            if len(more) < warmup + measured:
                lat["note"] = f"the trace ran out: {len(more)} of {warmup + measured} events"
            result["latency"] = lat
            items = paced_items(more, settings, warmup)
            lat["timed_actions"] = sum(1 for it in items if it[4])
            _say(f"latency, worker: {len(items)} events at {rate:,.0f}/s "
                 f"({len(items) / rate:.0f} s, first {warmup} not timed) ...")
            meter = CpuMeter({"worker": proc.pid, "broker": broker_pid})
            lat["worker"] = asyncio.run(paced(
                bootstrap, items, rate, {"decisions": topics["topic_decisions"],
                                         "revocations": topics["topic_revocations"]},
                partitions, meter))
            _cpu_cost(lat["worker"], "worker", "events_sent")
            if proc.poll() is not None:
                raise RuntimeError("the worker exited during the latency run")
            local.stop_worker(proc)
            result["worker_log"] = log_warnings(log)
            proc = None

            echo_topics = {k: f"{prefix}.echo-{k}" for k in ("intents", "actions", "out")}
            echo_settings = Settings(broker=f"kafka://{bootstrap}", partitions=partitions,
                                     topic_intents=echo_topics["intents"],
                                     topic_actions=echo_topics["actions"])
            asyncio.run(ensure_topics(echo_settings, list(echo_topics.values())))
            asyncio.run(wait_ready(bootstrap, list(echo_topics.values()), partitions))
            echo = EchoProcess(bootstrap, [echo_topics["intents"], echo_topics["actions"]],
                               echo_topics["out"], partitions, worker_cpu)
            echo.start()
            _say(f"latency, baseline echo: the same {len(items)} events at {rate:,.0f}/s ...")
            meter = CpuMeter({"baseline": echo.pid, "broker": broker_pid})
            lat["baseline"] = asyncio.run(paced(
                bootstrap, paced_items(more, echo_settings, warmup), rate,
                {"decisions": echo_topics["out"]}, partitions, meter))
            lat["baseline"]["process"] = echo.finish()
            _cpu_cost(lat["baseline"], "baseline", "events_sent")
            echo = None
            lat["how"] = (
                "Timed: agent.action events after the warm-up. Start: just before "
                "AIOKafkaProducer.send (acks all, linger 0) in this process. End: return of "
                "the getmany() in this same process (a consumer without group, at the end of "
                "the output topics before the run) that yields the first record carrying the "
                "event's id: the decision (worker), its revoke command on the revocations "
                "topic (violations), the echo record (baseline). Both instants are "
                "time.perf_counter() of one process. Events of every type are sent, paced "
                "from a fixed schedule (send_lag_ms: behind schedule).")
        if proc is not None:
            result["worker_log"] = log_warnings(log)
        result["load_avg_at_end"] = os.getloadavg()
        result["limits"] = limits(result)
    finally:
        os.sched_setaffinity(0, old_affinity)
        if echo is not None:
            with contextlib.suppress(Exception):
                echo.finish(5)
        if proc is not None:
            local.stop_worker(proc)
        if source_trace is not None:
            source_trace.close()
        if broker_dir is not None:
            local.stop_broker(broker_dir)
        if keep_dir is not None:
            keep_dir.mkdir(parents=True, exist_ok=True)
            for name in ("worker.log",):
                if (scratch / name).exists():
                    shutil.copy(scratch / name, keep_dir / name)
        shutil.rmtree(scratch, ignore_errors=True)
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


# -- output ----------------------------------------------------------------------------------
def _fmt(v, spec: str = ",.0f") -> str:
    return "-" if v is None else format(v, spec)


def summary_table(result: dict) -> str:
    e2e = result["end_to_end"]
    m = result["machine"]
    cpu = result["placement"]["worker_and_baselines_cpu"]
    trace = result["trace"]
    lines = [(f"broker benchmark at {result['commit']}, {m.get('cpus')} CPUs "
              f"({m.get('cpu_model', '?')}), {m.get('mem_total_mib', '?')} MiB; "
              f"worker and baselines on CPU {cpu}"),
             "",
             (f"1. end to end, {e2e['events']:,} events pre-loaded "
              f"({trace['source']} trace, {trace.get('active', '?')} tasks active)")]
    head = (f"{'':<28}{'events/s':>10}{'seconds':>9}{'records':>9}{'expected':>10}"
            f"{'core':>7}{'CPU ms/event':>14}")
    lines += [head, "-" * len(head)]
    for label, key, cpu_name in (("intentwatch worker", "worker", "worker"),
                                 ("aiokafka echo (baseline)", "baseline", "baseline")):
        r = e2e[key]
        busy = _share(r.get("cpu"), cpu_name)
        lines.append(f"{label:<28}{_fmt(r['events_per_second']):>10}"
                     f"{_fmt(r.get('seconds_first_to_last'), '.1f'):>9}{r['records']:>9,}"
                     f"{r['expected']:>10,}"
                     f"{'-' if busy is None else f'{busy:.0%}':>7}"
                     f"{_fmt(r.get('cpu_ms_per_event'), '.3f'):>14}")
    lines.append(f"ratio worker/baseline: {_fmt(e2e.get('ratio_worker_to_baseline'), '.3f')}")
    lat = result.get("latency")
    if lat:
        lines += ["", (f"2. latency at {lat['rate']:,.0f} events/s, {lat['events']:,} events "
                       f"({lat['timed_actions']:,} actions timed)")]
        cols = ["count", *(n for n, _ in QUANTILES), "max"]
        head = f"{'send -> readable (ms)':<28}" + "".join(f"{c:>9}" for c in cols)
        lines += [head, "-" * len(head)]
        rows = [("worker: decision", lat["worker"]["decision"]),
                ("worker: revoke command", lat["worker"].get("revoke_command", {})),
                ("baseline: echo record", lat["baseline"]["decision"])]
        for label, s in rows:
            if not s.get("count"):
                lines.append(f"{label:<28}{0:>9}")
                continue
            lines.append(f"{label:<28}{s['count']:>9,}" +
                         "".join(f"{s[c]:>9.2f}" for c in cols[1:]))
        lines.append(f"missing: worker {lat['worker']['missing']}, baseline "
                     f"{lat['baseline']['missing']}; rate achieved: worker "
                     f"{_fmt(lat['worker']['rate_achieved'])}, baseline "
                     f"{_fmt(lat['baseline']['rate_achieved'])} events/s")
    lines += ["", f"total {result['seconds']} s"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.broker",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=None,
                        help=f"events pre-loaded for the throughput runs "
                             f"(default {DEFAULTS['events']:,}; --quick {QUICK['events']:,})")
    parser.add_argument("--rate-fraction", type=float, default=0.5,
                        help="latency runs' rate as a fraction of the worker's measured rate "
                             "(default 0.5)")
    parser.add_argument("--rate", type=float, default=None,
                        help="latency runs' rate in events/s (overrides --rate-fraction)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--latency-seconds", type=float, default=None,
                       help=f"measured length of each latency run "
                            f"(default {DEFAULTS['latency_seconds']:g}; --quick "
                            f"{QUICK['latency_seconds']:g})")
    group.add_argument("--latency-events", type=int, default=None,
                       help="measured events of each latency run (instead of seconds)")
    parser.add_argument("--warmup-seconds", type=float, default=None,
                        help=f"untimed start of each latency run "
                             f"(default {DEFAULTS['warmup_seconds']:g})")
    parser.add_argument("--no-latency", action="store_true", help="throughput only")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--bootstrap", default=None,
                        help="a running broker host:port (default: start the local one)")
    parser.add_argument("--trace", type=Path, default=None,
                        help="a trace written by `python -m benchmarks.scale` (default: "
                             "generate it in process)")
    parser.add_argument("--source", choices=("auto", "agentdojo", "sample"), default="auto",
                        help="template runs of the generated trace (auto: the AgentDojo dev "
                             "set if present, else the bundled sample trace)")
    parser.add_argument("--active", type=int, default=None,
                        help=f"tasks active at once in the generated trace "
                             f"(default {DEFAULTS['active']}; --quick {QUICK['active']})")
    parser.add_argument("--partitions", type=int, default=4,
                        help="partitions of each topic (default 4)")
    parser.add_argument("--cpu", type=int, default=0,
                        help="the CPU of the worker and of the baselines (default 0)")
    parser.add_argument("--idle-seconds", type=float, default=None,
                        help="stop reading an output topic after this long without a record")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON,
                        help="where the figures go (default %(default)s); '-' for stdout")
    parser.add_argument("--keep-log", type=Path, default=None,
                        help="copy the worker's log into this folder")
    args = parser.parse_args(argv)
    if args.events is not None and args.events < 2:
        parser.error("--events must be at least 2")
    if not 0 < args.rate_fraction <= 1:
        parser.error("--rate-fraction must be in (0, 1]")
    if args.trace is not None and not args.trace.exists():
        parser.error(f"{args.trace} not found")
    missing = None if args.bootstrap else local.have_java_and_maven()
    if missing:
        print(f"broker: cannot start the local broker: {missing} not found "
              f"(or pass --bootstrap)", file=sys.stderr)
        return 2
    command = " ".join(["python -m benchmarks.broker",
                        *(sys.argv[1:] if argv is None else argv)])
    result = benchmark(args.bootstrap, events=args.events, rate_fraction=args.rate_fraction,
                       rate=args.rate, latency_seconds=args.latency_seconds,
                       latency_events=args.latency_events, warmup_seconds=args.warmup_seconds,
                       quick=args.quick, trace=args.trace, source=args.source,
                       active=args.active, partitions=args.partitions, worker_cpu=args.cpu,
                       idle_seconds=args.idle_seconds, latency=not args.no_latency,
                       keep_dir=args.keep_log, command=command)
    blob = orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n"
    print(summary_table(result))
    if str(args.json) == "-":
        sys.stdout.write(blob.decode())
    else:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_bytes(blob)
        print(f"figures in {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
