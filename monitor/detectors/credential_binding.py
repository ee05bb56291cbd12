"""A credential used by a task or an agent it was not issued to.

The intent lists the credentials issued for the task (and `credential.issued` events add to
them) and names the agent that runs it. An
action that presents another credential, or comes from another agent, is a stolen or reused
identity: there is no honest explanation, so the risk is certain.
"""

from .base import CERTAIN, Detector, finding


class CredentialBinding(Detector):
    name = "credential_binding"

    def score_one(self, action, task, spec):
        intent = task["intent"]
        out = []
        cred = action.get("credential_id")
        if cred is not None and cred not in (intent.get("credentials") or ()) and \
                cred not in (task.get("credentials") or ()):
            issued = list(intent.get("credentials") or []) + list(task.get("credentials") or {})
            out.append(finding(self.name, "credential_not_issued_to_task", CERTAIN,
                               f"credential {cred!r} was not issued to this task",
                               credential_id=cred, issued=issued))
        if action["agent_id"] != intent["agent_id"]:
            out.append(finding(self.name, "agent_mismatch", CERTAIN,
                               f"agent {action['agent_id']!r} acts for a task issued to "
                               f"{intent['agent_id']!r}", agent_id=action["agent_id"],
                               task_agent_id=intent["agent_id"]))
        return out
