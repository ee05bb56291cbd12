"""The broker benchmark's input: the events of a scaled trace, and how many decisions a worker
emits for them (the count its throughput reader waits for)."""

from __future__ import annotations

import itertools
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson

from benchmarks import scale
from monitor.contracts import ContractError, decode
from monitor.importers.agentdojo import CATALOG_PATH
from monitor.state import MAX_PENDING
from streams import local

SAMPLE_TRACE = local.ROOT / "monitor" / "data" / "sample_trace.jsonl"
SAMPLE_CATALOG = local.ROOT / "monitor" / "data" / "sample_catalog.json"


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


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
