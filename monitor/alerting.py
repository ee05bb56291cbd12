"""Which alerts reach people: de-duplicated and rate-limited per task.

Every non-allow decision still goes to `agent.alerts`; this gate decides which of them are also
pushed to an Alertmanager-compatible webhook, so one noisy task cannot flood the on-call.
  - de-duplication: the same task and reason code within `dedup_seconds` is sent once;
  - rate limit: at most `per_task` alerts per task in any `window_seconds`.
State is bounded (least recently seen tasks are forgotten first).
"""

from __future__ import annotations

from collections import OrderedDict

MAX_TASKS = 50_000


class AlertGate:
    def __init__(self, dedup_seconds: float = 300.0, per_task: int = 5,
                 window_seconds: float = 60.0):
        self.dedup_seconds = dedup_seconds
        self.per_task = per_task
        self.window_seconds = window_seconds
        self._tasks: OrderedDict[str, dict] = OrderedDict()
        self.suppressed = {"duplicate": 0, "rate_limited": 0}

    def admit(self, decision: dict, now: float) -> bool:
        if decision["verdict"] == "allow":
            return False
        task_id = decision["task_id"]
        state = self._tasks.pop(task_id, None) or {"codes": {}, "sent": []}
        self._tasks[task_id] = state
        if len(self._tasks) > MAX_TASKS:
            self._tasks.popitem(last=False)
        key = ",".join(sorted({r["code"] for r in decision["reasons"]})) or decision["verdict"]
        last = state["codes"].get(key)
        if last is not None and now - last < self.dedup_seconds:
            self.suppressed["duplicate"] += 1
            return False
        state["sent"] = [t for t in state["sent"] if now - t < self.window_seconds]
        if len(state["sent"]) >= self.per_task:
            self.suppressed["rate_limited"] += 1
            return False
        state["codes"][key] = now
        state["sent"].append(now)
        return True


def alertmanager_payload(decision: dict, now_iso: str) -> dict:
    """One alert in Alertmanager's API v2 shape (POST /api/v2/alerts takes a list of these)."""
    codes = sorted({r["code"] for r in decision["reasons"]})
    return {
        "labels": {"alertname": "IntentwatchDecision", "verdict": decision["verdict"],
                   "task_id": decision["task_id"], "agent_id": str(decision["agent_id"]),
                   "reason": ",".join(codes) or decision["verdict"],
                   "severity": "critical" if decision["verdict"] == "revoke" else "warning"},
        "annotations": {"summary": "; ".join(r["message"] for r in decision["reasons"])[:1000],
                        "risk": str(decision["risk"]), "event_id": str(decision["event_id"])},
        "startsAt": now_iso,
    }
