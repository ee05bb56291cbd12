"""Revoke commands: what the credential brokers and gateways act on.

The command id is derived from the task, the credentials and the reason only, so a retried or
re-processed event yields the very same command, and consumers de-duplicate by id.
"""

from __future__ import annotations

import hashlib

COMMAND_TTL_SECONDS = 300.0


def command_id(task_id: str, credential_ids: list[str], reason: str) -> str:
    material = "\x1f".join([task_id, ",".join(sorted(credential_ids)), reason])
    return hashlib.sha256(material.encode()).hexdigest()[:32]


def revoke_command(task: dict, credential_ids: list[str], decision: dict,
                   reason: str | None = None) -> dict:
    if reason is None:
        reason = decision["reasons"][0]["code"] if decision["reasons"] else "policy"
    intent = task["intent"] or {}
    return {
        "v": 1,
        "type": "revoke.command",
        "command_id": command_id(task["task_id"], credential_ids, reason),
        "task_id": task["task_id"],
        "agent_id": intent.get("agent_id", decision["agent_id"]),
        "workload_id": intent.get("workload_id"),
        "credential_ids": sorted(credential_ids),
        "scope": "credential" if credential_ids else "task",
        "reason": reason,
        "risk": decision["risk"],
        "evidence": decision["reasons"],
        "event_id": decision["event_id"],
        # Times come from event time, not the wall clock, so a replay reproduces them.
        "issued_at": decision["event_time"],
        "expires_at": decision["event_time"] + COMMAND_TTL_SECONDS,
    }
