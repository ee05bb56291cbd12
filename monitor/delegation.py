"""Delegation: a task may spawn sub-agent tasks, each naming its parent. A child must stay
within its parent: its tools a subset of the parent's, each argument the parent scopes scoped
at least as narrowly, and its depth within what the parent may still delegate. Anything more is
an escalation. Revoking a task revokes its descendants too (cascade).

Parent and child are usually on different partitions, so what delegation needs to know about
other tasks lives in a registry: a mapping task id -> small summary, shared by every worker (a
Faust global table in the worker, a dict in process). Entries are plain data.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from .detectors.base import SUSPICIOUS, VIOLATION, finding

MAX_CHILDREN = 256


def entry_for(intent: dict, parent: dict | None) -> dict:
    """The registry summary of a task, from its intent."""
    return {
        "parent": intent.get("parent_task_id"),
        "agent_id": intent["agent_id"],
        "workload_id": intent["workload_id"],
        "depth": 0 if parent is None else parent["depth"] + 1,
        "may_delegate": intent.get("max_delegation_depth", 0),
        "tools": list(intent["tools"]),
        "scopes": intent.get("scopes") or {},
        "credentials": list(intent.get("credentials") or []),
        "children": [],
        "revoked_at": None,
    }


def _pattern_within(child: str, parents: list[str]) -> bool:
    # A child pattern is within the parent's when the parent's patterns match it as a string:
    # '*@acme.example' is within '*@acme.example', '*' is not.
    return any(fnmatchcase(child, p) for p in parents)


def check(intent: dict, parent: dict | None) -> list[dict]:
    """Findings for a child intent against its parent's registry entry."""
    if not intent.get("parent_task_id"):
        return []
    if parent is None:
        # The parent's intent is not in the registry (not declared, or not propagated yet).
        return [finding("delegation", "parent_unknown", SUSPICIOUS,
                        "the parent task named by this delegation is unknown",
                        parent_task_id=intent["parent_task_id"])]
    out = []
    if parent["may_delegate"] < 1:
        out.append(finding("delegation", "delegation_not_allowed", VIOLATION,
                           "the parent task may not delegate (any further)",
                           parent_depth=parent["depth"], allowed=parent["may_delegate"]))
    elif intent.get("max_delegation_depth", 0) > parent["may_delegate"] - 1:
        out.append(finding("delegation", "delegation_depth_escalated", VIOLATION,
                           "the child claims more delegation depth than its parent has left",
                           claimed=intent.get("max_delegation_depth", 0),
                           left=parent["may_delegate"] - 1))
    extra_tools = sorted(set(intent["tools"]) - set(parent["tools"]))
    if extra_tools:
        out.append(finding("delegation", "tools_escalated", VIOLATION,
                           "the child declares tools its parent does not have",
                           tools=extra_tools))
    child_scopes = intent.get("scopes") or {}
    for arg, patterns in parent["scopes"].items():
        mine = child_scopes.get(arg)
        wider = ["<unscoped>"] if mine is None else [
            p for p in mine if not _pattern_within(p, patterns)]
        if wider:
            out.append(finding("delegation", "scope_escalated", VIOLATION,
                               f"the child's scope of {arg!r} is wider than its parent's",
                               argument=arg, child=wider, parent=patterns))
    return out


def register(registry, task_id: str, intent: dict) -> list[dict]:
    """Record a task's intent; return the delegation findings of its intent."""
    parent_id = intent.get("parent_task_id")
    parent = registry.get(parent_id) if parent_id else None
    findings = check(intent, parent)
    registry[task_id] = entry_for(intent, parent)
    if parent is not None and task_id not in parent["children"]:
        parent["children"] = (parent["children"] + [task_id])[-MAX_CHILDREN:]
        registry[parent_id] = parent
    return findings


def add_credential(registry, task_id: str, credential_id: str) -> None:
    entry = registry.get(task_id)
    if entry is not None and credential_id not in entry["credentials"]:
        entry["credentials"].append(credential_id)
        registry[task_id] = entry


def subtree(registry, task_id: str) -> list[str]:
    """The task and all its descendants, parents before children, each once."""
    order, seen, queue = [], set(), [task_id]
    while queue:
        tid = queue.pop(0)
        if tid in seen:
            continue
        seen.add(tid)
        order.append(tid)
        entry = registry.get(tid)
        if entry is not None:
            queue.extend(entry["children"])
    return order


def revoked_at(registry, task_id: str) -> float | None:
    entry = registry.get(task_id)
    return None if entry is None else entry["revoked_at"]


def mark_revoked(registry, task_ids: list[str], t: float) -> None:
    for tid in task_ids:
        entry = registry.get(tid)
        if entry is not None and entry["revoked_at"] is None:
            entry["revoked_at"] = t
            registry[tid] = entry
