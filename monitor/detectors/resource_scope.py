"""An argument value outside the resource scopes the task declared.

Scopes are glob patterns per argument name (fnmatch, case-sensitive); an argument the intent
does not scope is free. A list argument must have every element in scope.
"""

from fnmatch import fnmatchcase

from .base import SUSPICIOUS, VIOLATION, Detector, finding


def in_scope(value, patterns) -> bool:
    return any(fnmatchcase(value, p) for p in patterns)


class ResourceScope(Detector):
    name = "resource_scope"

    def score_one(self, action, task, spec):
        scopes = task["intent"].get("scopes") or {}
        out = []
        for arg, patterns in scopes.items():
            if arg not in action["args"]:
                continue
            value = action["args"][arg]
            values = value if isinstance(value, list) else [value]
            outside = [str(v) for v in values if not in_scope(str(v), patterns)]
            if outside:
                risk = VIOLATION if spec.side_effecting else SUSPICIOUS
                out.append(finding(self.name, "resource_out_of_scope", risk,
                                   f"argument {arg!r} of {action['tool']!r} is outside the "
                                   f"declared scope", argument=arg, values=outside[:5],
                                   allowed=patterns))
        return out
