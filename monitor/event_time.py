"""Duplicated and late events of a task: what the engine remembers to tell them apart.

Duplicates. A producer retry or a redelivery can bring the same event twice. Each event with an
`event_id` (except task.intent: a repeated intent already changes nothing) gets a fingerprint,
64 bits of blake2b over its canonical JSON (sorted keys), and the task remembers the
fingerprints of its last MAX_SEEN such events with the risk its decision had (None while an
action is held for its intent). A repeat is not decided again: nothing is counted or learned,
and its decision repeats the first one's risk and verdict with the reason `duplicate_event`.
The fingerprint covers the whole event, not only its id: an event that reuses an id with other
content is a new event (decided and counted), so an attacker cannot get a violation allowed by
giving it the id of an allowed action. Past MAX_SEEN later events of its task, a repeat is
decided again as a new event (as before this module).

Lateness. Each task keeps its watermark, the highest event time of its events. An event whose
time is within `allowed_lateness` seconds of the watermark is decided by its own time, as if it
had come in order. An event older than that is still decided (never dropped), with the reason
`late_event` (risk 0), and an action is decided as if it happened at the watermark: the monitor
does not believe a time it can no longer check. So an action sent after task.end, or after the
task's expires_at, with a backdated time is refused as `after_task_end` / `after_expiry`, as an
in-order one would be; within the lateness, backdating gains at most that many seconds.
"""

from __future__ import annotations

import base64
import hashlib

import orjson

MAX_SEEN = 16                       # fingerprints remembered per task (about 17 bytes each)
DEFAULT_ALLOWED_LATENESS = 5.0      # seconds (monitor.config.Settings.allowed_lateness_seconds)
LATE_KEY = "late_event_time"        # a late event's own time, on the copy the engine decides


def fingerprint(event: dict) -> str | None:
    """The fingerprint of an event a retry could count twice, or None for other events."""
    if not event.get("event_id") or event["type"] == "task.intent":
        return None
    digest = hashlib.blake2b(orjson.dumps(event, option=orjson.OPT_SORT_KEYS), digest_size=8)
    return base64.urlsafe_b64encode(digest.digest())[:11].decode()


_MISSING = object()


def first_risk(task: dict, fp: str | None):
    """The risk of the first delivery's decision (None: held, not decided yet), or _MISSING
    when the event is not a repeat."""
    if fp is None:
        return _MISSING
    return (task.get("seen") or {}).get(fp, _MISSING)


def is_repeat(found) -> bool:
    return found is not _MISSING


def remember(task: dict, fp: str | None, risk: float | None) -> None:
    if fp is None:
        return
    seen = task.get("seen")
    if seen is None:
        seen = task["seen"] = {}   # (a state written before this module)
    seen[fp] = risk
    if len(seen) > MAX_SEEN:
        del seen[next(iter(seen))]  # dicts keep insertion order: the oldest goes


def lateness_of(task: dict, t: float, allowed: float) -> float | None:
    """The task's watermark when an event at t is later than allowed, else None."""
    mark = task.get("latest")
    return mark if mark is not None and t < mark - allowed else None


def as_late(event: dict, mark: float) -> dict:
    """The copy of a late event the engine decides: an action at the watermark; any other
    event keeps its time (task.end and credential events take the earliest time they are
    given)."""
    late = {**event, LATE_KEY: event["event_time"]}
    if event["type"] == "agent.action":
        late["event_time"] = mark
    return late


def advance(task: dict, t: float) -> None:
    mark = task.get("latest")
    task["latest"] = t if mark is None or t > mark else mark
