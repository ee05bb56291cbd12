"""The one interface every detector implements, in river's style.

`score_one(action, task, spec)` looks at a requested action in the light of the task's state
*before* the action is recorded and returns findings (possibly none). `learn_one` is then called
with the same arguments so learned detectors update after scoring (prequential: score, then
learn). Rule detectors learn nothing.

A finding is a plain dict: detector, code, risk in [0, 1], a message for people, and evidence.
"""

from __future__ import annotations

# Risk levels the rule detectors use; the policy maps risk to a verdict.
CERTAIN = 1.0      # no honest explanation: a credential that is not the task's
VIOLATION = 0.95   # a side effect outside the declared intent
SUSPICIOUS = 0.6   # outside the intent, but harmless on its own (a read)


def finding(detector: str, code: str, risk: float, message: str, **evidence) -> dict:
    return {"detector": detector, "code": code, "risk": risk, "message": message,
            "evidence": evidence}


class Detector:
    name = "detector"

    def score_one(self, action: dict, task: dict, spec) -> list[dict]:
        raise NotImplementedError

    def learn_one(self, action: dict, task: dict, spec) -> None:
        return None

    def state(self) -> dict:
        """Learned state as plain data (empty for rules)."""
        return {}

    def load_state(self, state: dict) -> None:
        return None
