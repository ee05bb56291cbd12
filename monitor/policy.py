"""Fusion and policy: findings to one risk, risk to a verdict.

Fusion takes the strongest finding (a violation is not made milder by other evidence) and adds
a little for each further independent finding, capped at 1. The policy compares the risk with
two thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass

ALLOW, ALERT, REVOKE = "allow", "alert", "revoke"


def fuse(findings: list[dict]) -> float:
    """Noisy-or of the findings' risks: 1 - prod(1 - r)."""
    miss = 1.0
    for f in findings:
        miss *= 1.0 - f["risk"]
    return round(1.0 - miss, 6)


@dataclass(frozen=True)
class Policy:
    alert_at: float = 0.5
    revoke_at: float = 0.9

    def __post_init__(self):
        if not 0.0 < self.alert_at <= self.revoke_at <= 1.0:
            raise ValueError("thresholds must satisfy 0 < alert_at <= revoke_at <= 1")

    def verdict(self, risk: float) -> str:
        if risk >= self.revoke_at:
            return REVOKE
        if risk >= self.alert_at:
            return ALERT
        return ALLOW
