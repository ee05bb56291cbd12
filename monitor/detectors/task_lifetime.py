"""An action after the task ended or after its time to live ran out."""

from .base import VIOLATION, Detector, finding


class TaskLifetime(Detector):
    name = "task_lifetime"

    def score_one(self, action, task, spec):
        t = action["event_time"]
        if task["ended_at"] is not None and t >= task["ended_at"]:
            return [finding(self.name, "after_task_end", VIOLATION,
                            "action after the task ended", ended_at=task["ended_at"],
                            event_time=t)]
        expires = task["intent"].get("expires_at")
        if expires is not None and t > expires:
            return [finding(self.name, "after_expiry", VIOLATION,
                            "action after the task's time to live", expires_at=expires,
                            event_time=t)]
        return []
