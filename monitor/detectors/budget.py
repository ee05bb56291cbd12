"""More actions, or more side-effecting actions, than the task's budget allows.

Running over the action budget is an alert (a loop or a slow agent); running over the
side-effect budget is a violation (more changes than the task was allowed to make).
"""

from .base import SUSPICIOUS, VIOLATION, Detector, finding


class Budget(Detector):
    name = "budget"

    def score_one(self, action, task, spec):
        intent, w = task["intent"], task["window"]
        out = []
        max_actions = intent.get("max_actions")
        if max_actions is not None and w["actions"] + 1 > max_actions:
            out.append(finding(self.name, "action_budget_exceeded", SUSPICIOUS,
                               f"action {w['actions'] + 1} exceeds the budget of {max_actions}",
                               actions=w["actions"] + 1, max_actions=max_actions))
        max_side = intent.get("max_side_effects")
        if spec.side_effecting and max_side is not None and w["side_effects"] + 1 > max_side:
            out.append(finding(self.name, "side_effect_budget_exceeded", VIOLATION,
                               f"side effect {w['side_effects'] + 1} exceeds the budget of "
                               f"{max_side}", side_effects=w["side_effects"] + 1,
                               max_side_effects=max_side))
        return out
