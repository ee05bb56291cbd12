"""The baseline every evaluation reports beside the full engine: a plain allowlist of the
declared tools. Any call to a tool the intent did not declare is revoked; nothing else is seen."""

from .base import CERTAIN, Detector, finding


class Allowlist(Detector):
    name = "allowlist"

    def score_one(self, action, task, spec):
        if action["tool"] in task["intent"]["tools"]:
            return []
        return [finding(self.name, "tool_not_allowlisted", CERTAIN,
                        f"tool {action['tool']!r} is not on the allowlist", tool=action["tool"])]
