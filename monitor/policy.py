"""Fusion and policy: findings to one risk, risk to a verdict.

Fusion combines independent evidence with a noisy-or. Findings that rest on the same evidence
(they name the same `basis`, e.g. one verdict of the injection model seen by two detectors)
count once, at their strongest. The policy compares the risk with two thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass

ALLOW, ALERT, REVOKE = "allow", "alert", "revoke"


def fuse(findings: list[dict]) -> float:
    """Noisy-or over independent evidence: 1 - prod(1 - r), one r per basis."""
    if not findings:  # (most events)
        return 0.0
    strongest: dict = {}
    for i, f in enumerate(findings):
        basis = f.get("basis") or i
        strongest[basis] = max(strongest.get(basis, 0.0), f["risk"])
    miss = 1.0
    for risk in strongest.values():
        miss *= 1.0 - risk
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
