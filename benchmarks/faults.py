"""Faults on the real broker: a worker killed with SIGKILL mid-stream, a second worker joining
and the first leaving while events flow, the broker restarted under load. Each scenario
produces a trace at a steady pace, breaks something when about half of it is decided, then
checks what came out against an in-process replay of the same trace:

- the set of revoke command ids equals the replay's (none missing, none extra);
- every event's decision is on the decisions topic (by decision id; copies of a re-decided
  record are counted, and compared);
- probes sent after the fault show the state came back: an action of a task that had ended,
  one of a task that had been revoked, and a task whose move only a trained model finds odd.

tests/test_faults.py asserts these guarantees; this script runs the scenarios bigger and
prints the figures of RELIABILITY.md's table (it asserts nothing, it measures).

    python -m benchmarks.faults --tasks 3000 --out out/benchmarks/faults.json
"""

from __future__ import annotations

import argparse
import asyncio
import io
import itertools
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer

from monitor.catalog import Catalog
from monitor.config import Settings
from monitor.profiles import build_engine
from monitor.replay import replay
from streams import local
from streams.produce import ensure_topics, route
from streams.recovery_watchdog import EXIT_RECOVERY_STALLED
from tests import synthetic

# Ended tasks stay held (not freed by retention) for the whole trace: the probes need them.
# A stalled recovery exits after 20 s (streams/recovery_watchdog.py), well inside the waits.
WORKER_SETTINGS = {"retention_seconds": 10**7, "model_snapshot_seconds": 1.0,
                   "recovery_stall_seconds": 20.0}


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- the trace ---------------------------------------------------------------------------------
def fault_trace(n_tasks: int, active: int = 50, hijack_every: int = 4) -> list[bytes]:
    """Synthetic mail tasks, every `hijack_every`-th talked into an undeclared money transfer
    (a violation: one revoke command), `active` tasks interleaved round-robin so that a fault
    lands in the middle of many tasks. Event times never go down through the trace."""
    runs = [(synthetic.hijacked_undeclared if n % hijack_every == 0 else synthetic.benign)(n, 0.0)
            for n in range(n_tasks)]
    slots: list[list[dict]] = []
    out: list[bytes] = []
    upcoming = iter(runs)
    clock = 1.0
    while True:
        while len(slots) < active and (run := next(upcoming, None)) is not None:
            slots.append(list(run))
        if not slots:
            return out
        for run in slots:
            event = dict(run.pop(0), event_time=clock)
            clock += 0.001
            out.append(orjson.dumps(event))
        slots = [run for run in slots if run]


def odd_task(event_time: float) -> list[dict]:
    """A mail task that sends before it reads: only a sequence model that remembers the
    trace's clean tasks flags the send as an improbable move (see test_faults)."""
    return [dict(e, event_time=event_time + i) for i, e in enumerate(synthetic.task(
        "probe-odd", ["read_inbox", "send_email"], "Reply to my boss", 0.0,
        [("send_email", {"to": "boss@corp.example", "body": "hi"}, "sent")]))]


def late_action(task_id: str, event_time: float) -> dict:
    """An action of `task_id` after it ended or was revoked: only its recovered state says so."""
    return {"v": 1, "type": "agent.action", "task_id": task_id, "agent_id": "agent-1",
            "tool": "read_inbox", "args": {}, "credential_id": f"cred-{task_id}",
            "call_id": f"probe-{task_id}", "event_id": f"probe-{task_id}",
            "event_time": event_time, "phase": "requested"}


def replayed(lines: list[bytes], catalog: Path) -> list[dict]:
    """The decisions of an in-process replay, with the worker's line-up of detectors."""
    engine = build_engine("full", Catalog.load(catalog))
    return replay(enumerate(lines), engine, 512 * 1024, io.BytesIO(), io.BytesIO())["decisions"]


def commands_of(decisions: list[dict]) -> list[dict]:
    return [c for d in decisions for c in ([d["command"]] if d["command"] else []) + d["cascade"]]


# -- moving records ----------------------------------------------------------------------------
class PacedProducer(threading.Thread):
    """Sends lines at about `rate` per second, in the background, retrying a send the broker
    refused (it may be restarting): every line is sent, in order per task."""

    def __init__(self, lines: list[bytes], settings: Settings, rate: float = 1000.0):
        super().__init__(daemon=True)
        self.lines, self.settings, self.rate = lines, settings, rate
        self.sent = 0
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._produce())
        except Exception as exc:  # noqa: BLE001 (re-raised by wait(), in the caller)
            self.error = exc

    async def _produce(self) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.settings.bootstrap, linger_ms=5,
                                    enable_idempotence=True, request_timeout_ms=120_000,
                                    retry_backoff_ms=200)
        await producer.start()
        try:
            chunk = max(1, int(self.rate / 20))
            for start in range(0, len(self.lines), chunk):
                futures = []
                for raw in self.lines[start:start + chunk]:
                    topic, key = route(raw, self.settings)
                    futures.append(await producer.send(topic, raw, key=key))
                await asyncio.gather(*futures)
                self.sent = min(len(self.lines), start + chunk)
                await asyncio.sleep(chunk / self.rate)
        finally:
            await producer.stop()

    def wait(self, timeout: float = 180.0) -> None:
        self.join(timeout)
        if self.error is not None:
            raise self.error
        if self.is_alive():
            raise TimeoutError("the producer did not finish")


class OutputReader(threading.Thread):
    """Reads the decisions and revocations topics from the start, in the background, until
    stopped; keeps every record (value and broker timestamp)."""

    def __init__(self, bootstrap: str, settings: Settings):
        super().__init__(daemon=True)
        self.bootstrap, self.settings = bootstrap, settings
        self.decisions: list[tuple[float, dict]] = []
        self.commands: list[tuple[float, dict]] = []
        self._done = threading.Event()

    def run(self) -> None:
        s = self.settings

        def keep(r) -> None:
            into = self.decisions if r.topic == s.topic_decisions else self.commands
            into.append((r.timestamp / 1000.0, orjson.loads(r.value)))

        asyncio.run(local.read_topics(self.bootstrap, [s.topic_decisions, s.topic_revocations],
                                      lambda _: self._done.is_set(), timeout=3600,
                                      on_record=keep))

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout:.0f} s for {what}")
            time.sleep(0.1)

    def decided_ids(self) -> set[str]:
        return {d["decision_id"] for _, d in list(self.decisions)}

    def stop(self) -> None:
        self._done.set()
        self.join(30)


# -- one scenario ------------------------------------------------------------------------------
@dataclass
class Run:
    """What a scenario saw: the figures of the results table and what the checks need."""
    scenario: str
    events: int
    expected: list[dict] = field(default_factory=list)     # the replay's decisions
    decisions: list[dict] = field(default_factory=list)    # every decision record seen
    commands: list[dict] = field(default_factory=list)     # every command record seen
    recovery_seconds: float | None = None                  # longest pause in decisions
    probes: dict[str, str] = field(default_factory=dict)   # probe name -> its event id
    sent_after_fault: int = 0                              # trace events sent after it
    watchdog_restarts: int = 0                             # workers started again (exit 75)

    def figures(self) -> dict:
        expected_cmds = {c["command_id"] for c in commands_of(self.expected)}
        seen_cmds = [c["command_id"] for c in self.commands]
        expected_ids = {d["decision_id"] for d in self.expected}
        seen_ids = [d["decision_id"] for d in self.decisions]
        return {
            "scenario": self.scenario, "events": self.events,
            "violations": sum(1 for d in self.expected if d["command"]),
            "commands_expected": len(expected_cmds), "commands_seen": len(set(seen_cmds)),
            "command_duplicates": len(seen_cmds) - len(set(seen_cmds)),
            "commands_missing": len(expected_cmds - set(seen_cmds)),
            "commands_unexpected": len(set(seen_cmds) - expected_cmds),
            "decisions_expected": len(expected_ids),
            "decisions_lost": len(expected_ids - set(seen_ids)),
            "decisions_unexpected": len(set(seen_ids) - expected_ids),
            "re_decided": len(seen_ids) - len(set(seen_ids)),
            "re_decided_differing": len(self.differing_copies()),
            "left_without_intent": len(left_without_intent(self.expected, self.decisions)),
            "no_intent_copies": len(no_intent_copies(self.expected, self.decisions)),
            "sent_after_fault": self.sent_after_fault,
            "watchdog_restarts": self.watchdog_restarts,
            "recovery_seconds": self.recovery_seconds,
        }

    def differing_copies(self) -> list[str]:
        """Decision ids whose copies (a record decided again after the fault) differ."""
        first: dict[str, dict] = {}
        differing = []
        for d in self.decisions:
            seen = first.setdefault(d["decision_id"], d)
            if seen is not d and seen != d:
                differing.append(d["decision_id"])
        return differing

    def decision_of(self, event_id: str) -> dict:
        """The latest copy: an event read before its task's intent is decided again later."""
        return next(d for d in reversed(self.decisions) if d["event_id"] == event_id)


def left_without_intent(expected: list[dict], seen: list[dict]) -> set[str]:
    """Decision ids whose latest copy says `no_intent` though the replay's does not: an event
    read before its task's intent (another topic) and not yet decided again against it."""
    latest = {d["decision_id"]: d for d in seen}
    return {d["decision_id"] for d in expected
            if "no_intent" not in _codes(d) and d["decision_id"] in latest
            and "no_intent" in _codes(latest[d["decision_id"]])}


def last_warnings(logs: list[Path], keep: int = 12) -> str:
    """The last warning and error lines of the workers' logs (CI keeps only the test's output,
    so a stalled scenario must say in its error what the workers said)."""
    lines = []
    for log in dict.fromkeys(logs):  # two workers of a test may share one log
        text = log.read_text(errors="replace") if log.exists() else ""
        lines += [f"{log.name}: {line[:240]}" for line in text.splitlines()
                  if "[WARNING]" in line or "[ERROR]" in line][-keep:]
    return "\n".join(lines) or "(none)"


def no_intent_copies(expected: list[dict], seen: list[dict]) -> set[str]:
    """Decision ids with any copy that says `no_intent` though the replay's does not (an
    alert about a task that has an intent), whether or not decided again since."""
    wrong = {d["decision_id"] for d in seen if "no_intent" in _codes(d)}
    return {d["decision_id"] for d in expected
            if d["decision_id"] in wrong and "no_intent" not in _codes(d)}


def _codes(decision: dict) -> set[str]:
    return {r["code"] for r in decision["reasons"]}


class Scenario:
    """Runs one fault: `start(prefix, **settings)` starts a worker (the test suite's fixture, or
    Workers below) and returns an object with .proc, .settings and .bootstrap."""

    def __init__(self, name: str, start, lines: list[bytes], catalog: Path, prefix: str,
                 rate: float = 1000.0):
        self.name, self.start, self.lines, self.catalog = name, start, lines, catalog
        self.prefix, self.rate = prefix, rate
        self.logs: list[Path] = []  # the workers' logs, quoted when a wait times out
        self.started: list = []     # every worker started, for _supervise
        self.restarts = 0

    def worker(self):
        started = self.start(self.prefix, catalog=self.catalog, **WORKER_SETTINGS)
        self.logs.append(started.log)
        self.started.append(started)
        return started

    def _supervise(self, stop: threading.Event) -> None:
        """Play the deployment's supervisor (Kubernetes, Compose's restart policy): a worker
        that exits with EXIT_RECOVERY_STALLED is started again. Workers the fault stops or
        kills exit otherwise and are left alone."""
        restarted = set()
        while not stop.wait(0.5):
            for w in list(self.started):
                if id(w) not in restarted and w.proc.poll() == EXIT_RECOVERY_STALLED:
                    restarted.add(id(w))
                    self.restarts += 1
                    _say(f"faults: a worker's recovery stalled (exit "
                         f"{EXIT_RECOVERY_STALLED}): started again")
                    self.worker()

    def run(self, fault: Callable, at: float = 0.5) -> Run:
        """Start a worker, stream the trace, call fault(reader, worker, producer) once a
        fraction `at` of the decisions is out, then send the probes and wait for every
        expected decision and command."""
        first = self.worker()
        settings, bootstrap = first.settings, first.bootstrap
        supervising = threading.Event()
        supervisor = threading.Thread(target=self._supervise, args=(supervising,), daemon=True)
        supervisor.start()
        asyncio.run(ensure_topics(settings, [settings.topic_intents, settings.topic_actions]))
        reader = OutputReader(bootstrap, settings)
        reader.start()
        producer = PacedProducer(self.lines, settings, self.rate)
        producer.start()
        try:
            reader.wait_for(lambda: len(reader.decisions) >= len(self.lines) * at, 120,
                            f"{at:.0%} of the decisions")
            fault_at = time.time()
            before = list(reader.decisions), list(reader.commands)
            fault(reader, first, producer)
            unsent = len(self.lines) - producer.sent  # events still to flow after the fault
            producer.wait()
            probes_at = time.time()
            probes = self._probes(*before)
            sender = PacedProducer([orjson.dumps(e) for e in probes.events], settings)
            sender.start()
            sender.wait()
            expected = replayed(self.lines + [orjson.dumps(e) for e in probes.events],
                                self.catalog)
            want_ids = {d["decision_id"] for d in expected}
            want_cmds = {c["command_id"] for c in commands_of(expected)}
            seen_cmds = lambda: {c["command_id"] for _, c in list(reader.commands)}
            unsettled = lambda: left_without_intent(
                expected, [d for _, d in list(reader.decisions)])
            try:
                reader.wait_for(lambda: want_ids <= reader.decided_ids() and
                                want_cmds <= seen_cmds() and not unsettled(), 120,
                                "every expected decision and command")
            except TimeoutError as exc:
                lost = sorted(want_ids - reader.decided_ids())
                raise TimeoutError(f"{exc}: {len(lost)} decisions missing ({lost[:5]}), "
                                   f"{len(want_cmds - seen_cmds())} commands missing, "
                                   f"{len(unsettled())} left without their intent; "
                                   f"the workers' last warnings:\n{last_warnings(self.logs)}"
                                   ) from None
            time.sleep(2.0)  # room for a late duplicate or an unexpected command
        finally:
            supervising.set()
            supervisor.join(5)
            reader.stop()
            producer.join(5)
        # The longest time without a decision while the trace was decided, from the fault on
        # (the kill to the new worker's first decision; the broker's downtime; a rebalance).
        times = [fault_at] + sorted(t for t, _ in reader.decisions if fault_at < t < probes_at)
        pause = max(b - a for a, b in itertools.pairwise(times)) if len(times) > 1 else None
        return Run(self.name, len(self.lines), expected, [d for _, d in reader.decisions],
                   [c for _, c in reader.commands], pause and round(pause, 2), probes.ids,
                   unsent, self.restarts)

    def _probes(self, decisions: list[tuple[float, dict]], commands: list[tuple[float, dict]]):
        """A task that ended and one that was revoked before the fault (as the outputs read
        by then show), and the odd task; their events come after all of the trace's."""
        ended_tasks = [d["task_id"] for _, d in decisions if d["event_type"] == "task.end"]
        # A task revoked and not yet ended: then only its revocation refuses the probe.
        revoked = next((c["task_id"] for _, c in commands if c["task_id"] not in ended_tasks),
                       commands[0][1]["task_id"])
        ended = ended_tasks[0]
        last = max(orjson.loads(raw)["event_time"] for raw in self.lines[-50:])
        events = [late_action(ended, last + 1), late_action(revoked, last + 2)] + \
            odd_task(last + 3)
        return _Probes(events, {"after_end": events[0]["event_id"],
                                "after_revoke": events[1]["event_id"],
                                "odd_send": events[3]["event_id"]})  # (2: its intent)


@dataclass
class _Probes:
    events: list[dict]
    ids: dict[str, str]


def kill_and_restart(scenario: Scenario):
    def fault(reader, worker, producer):
        os.kill(worker.proc.pid, signal.SIGKILL)
        worker.proc.wait()
        scenario.worker()
    return fault


def join_then_leave(scenario: Scenario):
    """A second worker joins; once 70% of the trace is sent (events still flow), the first
    leaves (a clean stop: it leaves the group). Run it with at=0.25 and a rate slow enough
    for a worker to start while the trace is sent."""
    def fault(reader, worker, producer):
        scenario.worker()
        reader.wait_for(lambda: producer.sent >= len(scenario.lines) * 0.7, 120,
                        "70% of the trace sent")
        local.stop_worker(worker.proc)
    return fault


def restart_broker(state_dir: Path):
    def fault(reader, worker, producer):
        local.restart_broker(state_dir)
    return fault


# -- running it outside the test suite ---------------------------------------------------------
@dataclass
class StartedWorker:
    proc: object
    settings: Settings
    bootstrap: str
    log: Path


class Workers:
    """Starts worker processes on one broker as the test suite's start_worker fixture does
    (each run's own topics, fast rebalancing, signed commands), and stops them all."""

    def __init__(self, bootstrap: str, work: Path):
        self.bootstrap, self.work = bootstrap, work
        self.procs: list = []
        from monitor.signing import generate_key_pair
        private, _ = generate_key_pair()
        self.key = work / "signing.pem"
        self.key.write_bytes(private)

    def __call__(self, prefix: str, **overrides) -> StartedWorker:
        names = {f"topic_{k}": f"{prefix}.{k}" for k in
                 ("intents", "actions", "decisions", "alerts", "revocations", "dead_letters",
                  "acks")}
        values = dict(names, app_id=f"iw-{prefix}", fast_rebalance=1,
                      web_port=local.free_port(), data_dir=self.work / f"data-{prefix}",
                      signing_key=self.key, **overrides)
        log = self.work / f"worker-{prefix}-{len(self.procs)}.log"
        proc = local.start_worker(local.worker_env(self.bootstrap, **values), log)
        self.procs.append(proc)
        local.wait_healthy(int(values["web_port"]), proc, log)
        settings = Settings(broker=f"kafka://{self.bootstrap}",
                            **{k: v for k, v in values.items() if k.startswith("topic_")})
        return StartedWorker(proc, settings, self.bootstrap, log)

    def stop_all(self) -> None:
        for proc in self.procs:
            local.stop_worker(proc)


def write_catalog(folder: Path) -> Path:
    path = folder / "synthetic-catalog.json"
    path.write_bytes(orjson.dumps(synthetic.CATALOG))
    return path


SCENARIOS = {"sigkill": kill_and_restart, "join_leave": join_then_leave,
             "broker_restart": None}   # (None: restart_broker, which needs the broker's state)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.faults",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=3000, help="tasks in each trace")
    parser.add_argument("--rate", type=float, default=2000.0, help="events per second sent")
    parser.add_argument("--out", type=Path, default=Path("out/benchmarks/faults.json"))
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help=f"comma-separated, of {', '.join(SCENARIOS)} (default all)")
    args = parser.parse_args(argv)
    chosen = args.scenarios.split(",")
    if unknown := set(chosen) - set(SCENARIOS):
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    results = []
    with tempfile.TemporaryDirectory(prefix="iw-faults-") as tmp:
        work = Path(tmp)
        catalog = write_catalog(work)
        lines = fault_trace(args.tasks)
        state = work / "kafka"
        bootstrap = local.start_broker(state)
        workers = Workers(bootstrap, work)
        try:
            for name, fault in ((n, f) for n, f in SCENARIOS.items() if n in chosen):
                scenario = Scenario(name, workers, lines, catalog, f"bench-{name}", args.rate)
                _say(f"faults: {name}: {len(lines)} events ...")
                run = (scenario.run(restart_broker(state)) if fault is None else
                       scenario.run(fault(scenario), 0.25 if name == "join_leave" else 0.5))
                figures = run.figures()
                figures["probes"] = {k: {"verdict": (d := run.decision_of(v))["verdict"],
                                         "reasons": [r["code"] for r in d["reasons"]]}
                                     for k, v in run.probes.items()}
                results.append(figures)
                _say(orjson.dumps(figures).decode())
        finally:
            workers.stop_all()
            local.stop_broker(state)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps({"machine": f"{os.cpu_count()} CPUs", "tasks": args.tasks,
                                       "rate": args.rate, "results": results},
                                      option=orjson.OPT_INDENT_2))
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
