"""What the worker decided lately, for the dashboard: plain data, bounded by construction.

The worker feeds `ActivityRecorder.record()` once per batch with each record's raw bytes and
the decisions the pipeline returned for it. It keeps:

- the most recently active `max_tasks` tasks (least recently active dropped first), each with
  its worst verdict and highest risk so far, its last verdict and risk, whether it was revoked
  or ended, its goal when known, and a timeline of its last `timeline_length` decisions;
- the last `max_alerts` decisions that were not `allow` (alerts and revocations, any task).

Bounds: every string taken from an event (ids, tool names, goals, messages, evidence) is cut
to a fixed length, a decision keeps at most MAX_REASONS reasons, MAX_CREDENTIALS credential ids
and MAX_CASCADE cascade commands. So memory is at most (max_tasks x timeline_length +
max_alerts) entries of bounded size plus max_tasks task summaries, whatever agents send.
A decision that holds no reasons and no command (most of them) costs one small tuple.

It sees only what this worker decided: the tasks of the partitions it owns.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from collections.abc import Iterable

import orjson

from .policy import ALERT, ALLOW, REVOKE

log = logging.getLogger("intentwatch.activity")

MAX_ID = 80             # chars kept of ids, tool names, detector names and codes
MAX_GOAL = 300
MAX_MESSAGE = 200
MAX_EVIDENCE = 300      # chars kept of a reason's evidence, as JSON text
MAX_REASONS = 6         # per decision (the others are counted)
MAX_CREDENTIALS = 8     # per revoke command (the others are counted)
MAX_CASCADE = 4         # cascade commands per decision (the others are counted)

RANK = {ALLOW: 0, ALERT: 1, REVOKE: 2}

# A timeline entry is a plain tuple (cheap to build on the worker's path) in this order;
# `entry_json()` names its fields when it is served.
ENTRY_FIELDS = ("seq", "seen_at", "event_time", "event_type", "tool", "phase", "verdict",
                "risk", "reasons", "n_reasons", "command", "cascade", "n_cascade", "event_id")
_NONE = ()


def _cut(value, limit: int = MAX_ID):
    """A string from an event, at most `limit` chars (the same object when it is short)."""
    if isinstance(value, str):
        return value if len(value) <= limit else value[:limit] + "..."  # (ASCII: 1 byte/char)
    return value


def _reason(r: dict) -> dict:
    evidence = orjson.dumps(r.get("evidence") or {}, default=str).decode()
    return {"detector": _cut(r.get("detector")), "code": _cut(r.get("code")),
            "risk": r.get("risk"), "message": _cut(r.get("message"), MAX_MESSAGE),
            "evidence": _cut(evidence, MAX_EVIDENCE)}


def _cascaded(c: dict) -> dict:
    """A cascade command as the timeline shows it: which task, which command (the credentials
    are on the bus and in the decision record)."""
    return {"command_id": _cut(c.get("command_id")), "task_id": _cut(c.get("task_id")),
            "credentials": len(c.get("credential_ids") or ())}


def _goal(raw: bytes) -> str | None:
    """The goal of a task.intent record (already validated by the pipeline)."""
    goal = orjson.loads(raw).get("goal")
    return _cut(goal, MAX_GOAL) if isinstance(goal, str) else None


def _command(c: dict) -> dict:
    creds = c.get("credential_ids") or []
    return {"command_id": _cut(c.get("command_id")), "task_id": _cut(c.get("task_id")),
            "credential_ids": [_cut(x) for x in creds[:MAX_CREDENTIALS]],
            "more_credentials": max(0, len(creds) - MAX_CREDENTIALS),
            "scope": _cut(c.get("scope")), "reason": _cut(c.get("reason"))}


class TaskActivity:
    """One task as the dashboard lists it."""

    __slots__ = ("agent_id", "alerts", "decisions", "ended", "first_seen", "goal",
                 "last_event_time", "last_risk", "last_seen", "last_verdict", "revoked", "risk",
                 "task_id", "timeline", "verdict")

    def __init__(self, task_id: str, timeline_length: int, seen_at: float):
        self.task_id = task_id
        self.agent_id = None
        self.goal = None
        self.verdict, self.risk = ALLOW, 0.0            # worst so far
        self.last_verdict, self.last_risk = ALLOW, 0.0
        self.revoked = self.ended = False
        self.decisions = self.alerts = 0
        self.first_seen = self.last_seen = seen_at      # wall clock of this worker
        self.last_event_time = None
        self.timeline: deque = deque(maxlen=timeline_length)

    def summary(self) -> dict:
        return {"task_id": self.task_id, "agent_id": self.agent_id, "goal": self.goal,
                "verdict": self.verdict, "risk": self.risk, "last_verdict": self.last_verdict,
                "last_risk": self.last_risk, "revoked": self.revoked, "ended": self.ended,
                "state": "ended" if self.ended else "active",
                "decisions": self.decisions, "alerts": self.alerts,
                "first_seen": self.first_seen, "last_seen": self.last_seen,
                "last_event_time": self.last_event_time}


def entry_json(entry: tuple) -> dict:
    out = dict(zip(ENTRY_FIELDS, entry, strict=True))
    out["more_reasons"] = out.pop("n_reasons") - len(out["reasons"])  # (beyond the bounds)
    out["more_cascade"] = out.pop("n_cascade") - len(out["cascade"])
    out["reasons"], out["cascade"] = list(out["reasons"]), list(out["cascade"])
    return out


class ActivityRecorder:
    def __init__(self, max_tasks: int = 200, timeline_length: int = 30, max_alerts: int = 300):
        if min(max_tasks, timeline_length, max_alerts) < 1:
            raise ValueError("activity bounds must be at least 1")
        self.max_tasks, self.timeline_length, self.max_alerts = (
            max_tasks, timeline_length, max_alerts)
        self._tasks: OrderedDict[str, TaskActivity] = OrderedDict()  # least recent first
        self._alerts: deque = deque(maxlen=max_alerts)               # (task_id, entry)
        self._seq = 0

    def bounds(self) -> dict:
        return {"max_tasks": self.max_tasks, "timeline_length": self.timeline_length,
                "max_alerts": self.max_alerts}

    # -- the worker's side: once per batch -------------------------------------------------
    def record(self, batch: Iterable[tuple[bytes | None, list[dict]]],
               seen_at: float | None = None) -> None:
        """Remember a batch: (the record's raw bytes, its decisions) for each record. The raw
        bytes are read only for a task.intent decision, for the goal (decisions do not carry
        it; a task's state after the batch may be its ended state, which keeps none).
        Never raises: a fault here must not stop the worker (the dashboard then misses the
        rest of the batch, and the log says so)."""
        try:
            self._record(batch, time.time() if seen_at is None else seen_at)
        except Exception:
            log.exception("dashboard: could not record a batch of decisions")

    def _record(self, batch: Iterable[tuple[bytes | None, list[dict]]], seen_at: float) -> None:
        for raw, decisions in batch:
            for d in decisions:
                self._one(self._tasks, raw, d, seen_at)

    def _one(self, tasks: OrderedDict, raw: bytes | None, d: dict, seen_at: float) -> None:
        # The entry first: it reads every field, so a record that is not a decision
        # changes nothing.
        verdict, risk, reasons, command, cascade = (
            d["verdict"], d["risk"], d["reasons"], d["command"], d["cascade"])
        entry = (self._seq + 1, seen_at, d["event_time"], d["event_type"], _cut(d["tool"]),
                 d["phase"], verdict, risk,
                 tuple(_reason(r) for r in reasons[:MAX_REASONS]) if reasons else _NONE,
                 len(reasons),
                 _command(command) if command else None,
                 tuple(_cascaded(c) for c in cascade[:MAX_CASCADE]) if cascade else _NONE,
                 len(cascade), _cut(d["event_id"]))
        self._seq += 1
        task_id = _cut(d["task_id"])
        task = tasks.get(task_id)
        if task is None:
            task = tasks[task_id] = TaskActivity(task_id, self.timeline_length, seen_at)
            if len(tasks) > self.max_tasks:
                tasks.popitem(last=False)
        else:
            tasks.move_to_end(task_id)
        task.timeline.append(entry)
        task.decisions += 1
        task.last_seen, task.last_event_time = seen_at, d["event_time"]
        task.last_verdict, task.last_risk = verdict, risk
        task.risk = max(task.risk, risk)
        if verdict != ALLOW:
            task.alerts += 1
            self._alerts.append((task_id, entry))
            if RANK[verdict] > RANK[task.verdict]:
                task.verdict = verdict
            if verdict == REVOKE:
                task.revoked = True
        if task.agent_id is None:
            task.agent_id = _cut(d.get("agent_id"))
        etype = d["event_type"]
        if etype == "task.intent" and task.goal is None and raw is not None:
            task.goal = _goal(raw)
        elif etype == "task.end":
            task.ended = True
        for c in cascade:  # a cascade revokes other tasks: mark the ones listed here
            other = tasks.get(_cut(c.get("task_id")))
            if other is not None:
                other.revoked = True

    # -- the dashboard's side ------------------------------------------------------------
    def tasks(self, limit: int | None = None) -> list[dict]:
        """Task summaries, the riskiest first (worst verdict, then highest risk, then the most
        recently active)."""
        ranked = sorted(self._tasks.values(), reverse=True,
                        key=lambda t: (RANK[t.verdict], t.risk, t.last_seen))
        return [t.summary() for t in ranked[:limit]]

    def alerts(self, limit: int | None = None) -> list[dict]:
        """Recent non-allow decisions, the newest first, each with its task id."""
        recent = list(self._alerts)[::-1][:limit]
        return [dict(entry_json(entry), task_id=task_id) for task_id, entry in recent]

    def timeline(self, task_id: str) -> dict | None:
        """One task's summary and its last decisions, oldest first; None if not tracked."""
        task = self._tasks.get(_cut(task_id))
        if task is None:
            return None
        return {"task": task.summary(), "timeline": [entry_json(e) for e in task.timeline]}

    def __len__(self) -> int:
        return len(self._tasks)
