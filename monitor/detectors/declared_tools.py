"""A tool the task did not declare."""

from .base import SUSPICIOUS, VIOLATION, Detector, finding


class DeclaredTools(Detector):
    name = "declared_tools"

    def score_one(self, action, task, spec):
        declared = task["intent"]["tools"]
        if action["tool"] in declared:
            return []
        risk = VIOLATION if spec.side_effecting else SUSPICIOUS
        kind = "side-effecting" if spec.side_effecting else "read-only"
        return [finding(self.name, "tool_not_declared", risk,
                        f"{kind} tool {action['tool']!r} is not among the declared tools",
                        tool=action["tool"], declared=declared,
                        capabilities=sorted(spec.capabilities))]
