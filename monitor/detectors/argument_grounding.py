"""Argument grounding: where did the target of a side effect come from?

For a side-effecting call (or a call to an open-world tool, such as a web fetch), every target
argument (recipient, account, URL, path... as the catalog names them) should be grounded: in the
declared intent (goal and scopes), or in content the task read that did not look injected. A
target that appears only in content the injection model found suspicious is the signature of a
hijack that stays inside the declared tools; a target that appears nowhere the monitor saw is
weaker evidence (the agent may know it from elsewhere), worth an alert only with other evidence.
"""

from functools import lru_cache

from .. import bloom, text
from ..state import target_values
from .base import VIOLATION, Detector, finding, goal_tokens

UNGROUNDED = 0.45


class ArgumentGrounding(Detector):
    name = "argument_grounding"

    def applies_to(self, spec):
        return spec.watched

    def score_one(self, action, task, spec):
        if not spec.watched:
            return []
        intent = task["intent"]
        trusted = goal_tokens(intent["goal"])
        if intent.get("scopes"):
            trusted = trusted.union(*(text.tokens(p) for patterns in intent["scopes"].values()
                                      for p in patterns))
        prov = task.get("provenance") or {}
        read_clean, tainted = bloom.reader(prov.get("clean", ())), prov.get("tainted", {})
        out = []
        for value, is_target in _checked_values(action, spec):
            toks = _followed(value, is_target)
            if not toks or all(t in trusted or read_clean(t) for t in toks):
                continue
            suspicion = max((tainted.get(t, 0.0) for t in toks), default=0.0)
            if suspicion:
                # As sure as the injection model is that the source was injected.
                out.append(finding(self.name, "target_from_suspicious_content",
                                   min(suspicion, VIOLATION),
                                   f"{'target' if is_target else 'value'} {str(value)[:80]!r} "
                                   f"of {action['tool']!r} comes from content that looks "
                                   "injected, not from the intent",
                                   basis="injection_model", value=str(value)[:200],
                                   tool=action["tool"], suspicion=suspicion))
            elif is_target:
                out.append(finding(self.name, "ungrounded_target", UNGROUNDED,
                                   f"target {value!r} of {action['tool']!r} appears neither in "
                                   "the intent nor in anything the task read",
                                   value=str(value)[:200], tool=action["tool"]))
        return out


@lru_cache(maxsize=1 << 14)
def _followed(value, is_target: bool) -> tuple[str, ...]:
    """The tokens of a value that must be grounded: all of a target's; in free text (a message
    body) only addresses and codes. Cached: agents send the same values again and again."""
    toks = text.tokens(text.normalise(value))
    if is_target:
        return toks
    return tuple(t for t in toks if text.shape(t) in ("email", "url", "code"))


def _checked_values(action, spec):
    """(value, is_target) for every target argument, and for the other string arguments of a
    side effect (data copied out of injected content into a message is a hijack too)."""
    for value in target_values(action, spec.targets):
        yield value, True
    if spec.side_effecting:
        for name, value in action["args"].items():
            if name not in spec.targets and isinstance(value, str):
                yield value, False
