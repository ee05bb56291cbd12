"""Credential lifecycle: a credential used after it expired or was revoked, or presented by a
workload it was not issued to; and, when a task ends, credentials that outlive it.

The facts come from `credential.issued` and `credential.revoked` events (ids, never values),
which the engine keeps in the task's state under `credentials`.
"""

from .base import CERTAIN, VIOLATION, Detector, finding

OUTLIVES = 0.5  # an alert: lifecycle hygiene, not an attack


class CredentialLifecycle(Detector):
    name = "credential_lifecycle"

    def score_one(self, action, task, spec):
        cred = action.get("credential_id")
        info = (task.get("credentials") or {}).get(cred)
        if info is None:
            return []
        t = action["event_time"]
        out = []
        if info["revoked_at"] is not None and t >= info["revoked_at"]:
            out.append(finding(self.name, "credential_revoked", CERTAIN,
                               f"credential {cred!r} was revoked", credential_id=cred,
                               revoked_at=info["revoked_at"]))
        if t > info["expires_at"]:
            out.append(finding(self.name, "credential_expired", VIOLATION,
                               f"credential {cred!r} has expired", credential_id=cred,
                               expires_at=info["expires_at"]))
        workload = action.get("workload_id")
        if workload is not None and workload != info["workload_id"]:
            out.append(finding(self.name, "workload_mismatch", CERTAIN,
                               f"credential {cred!r} presented by {workload!r}, issued to "
                               f"{info['workload_id']!r}", credential_id=cred,
                               workload_id=workload, issued_to=info["workload_id"]))
        return out


def outliving(task: dict, ended_at: float) -> list[dict]:
    """Findings for credentials still valid when their task ended and not revoked."""
    out = []
    for cred, info in sorted((task.get("credentials") or {}).items()):
        if info["revoked_at"] is None and info["expires_at"] > ended_at and \
                cred not in task["revoked"]:
            out.append(finding(CredentialLifecycle.name, "credential_outlives_task", OUTLIVES,
                               f"credential {cred!r} stays valid after its task ended",
                               credential_id=cred, expires_at=info["expires_at"],
                               ended_at=ended_at))
    return out
