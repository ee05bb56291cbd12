"""The one interface every detector implements, in river's style.

`score_one(action, task, spec)` looks at a requested action in the light of the task's state
*before* the action is recorded and returns findings (possibly none). `learn_one` is then called
with the same arguments plus every finding of that action (so a learned detector can take the
rules' verdict as a label): prequential, score first, then learn. Two more hooks let detectors
watch what is not an action: `observe_result` sees each completed call's result, `task_ended`
sees a task end and whether it ended clean (no alert, no revoke). Rule detectors use none.
The engine calls only the hooks a detector overrides, and `score_one` only for the tools
`applies_to` accepts.

A finding is a plain dict: detector, code, risk in [0, 1], a message for people, and evidence.
"""

from __future__ import annotations

from functools import lru_cache

from .. import text

# Risk levels the rule detectors use; the policy maps risk to a verdict.
CERTAIN = 1.0      # no honest explanation: a credential that is not the task's
VIOLATION = 0.95   # a side effect outside the declared intent
SUSPICIOUS = 0.6   # outside the intent, but harmless on its own (a read)


def finding(detector: str, code: str, risk: float, message: str, basis: str | None = None,
            **evidence) -> dict:
    """`basis` names the evidence a finding rests on when another finding may rest on the same
    (fusion then counts it once)."""
    f = {"detector": detector, "code": code, "risk": risk, "message": message,
         "evidence": evidence}
    if basis:
        f["basis"] = basis
    return f


@lru_cache(maxsize=4096)
def goal_tokens(goal: str) -> frozenset[str]:
    """The tokens of a task's goal, which ground the targets they name (cached: read at every
    side effect and every suspicious result of the task)."""
    return frozenset(text.tokens(goal))


class LastScored:
    """What a detector computed in score_one for the action it scored last, for its learn_one
    of the same action: the engine calls learn_one right after score_one, with the same action
    object and before it records the action, so the task's window is unchanged between them.
    Matched by identity: another action gets nothing back."""

    __slots__ = ("_action", "_value")

    def __init__(self) -> None:
        self._action = self._value = None

    def put(self, action: dict, value) -> None:
        self._action, self._value = action, value

    def get(self, action: dict):
        return self._value if self._action is action else None


class Detector:
    name = "detector"

    def applies_to(self, spec) -> bool:
        """Whether score_one can find anything for calls of this tool. The engine asks once per
        tool and skips the detector for the others (most only look at side effects)."""
        return True

    def score_one(self, action: dict, task: dict, spec) -> list[dict]:
        raise NotImplementedError

    def learn_one(self, action: dict, task: dict, spec, findings: list[dict]) -> None:
        return None

    def observe_result(self, action: dict, task: dict, spec) -> None:
        return None

    def task_ended(self, task: dict, clean: bool) -> None:
        return None

    def state(self) -> bytes | None:
        """Learned state (None for rules) as a plain snapshot (monitor.detectors.snapshot), to
        save and restore models."""
        return None

    def load_state(self, blob: bytes) -> None:
        """Restore a snapshot of `state`; on a SnapshotError (refused: the reason says why) the
        state is unchanged."""
