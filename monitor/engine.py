"""The decision engine: one event in, decisions out.

The same engine serves the live Faust worker, the replay of a recorded trace and (later) inline
decision requests, so a replay reproduces live decisions exactly. It is deterministic: decisions
depend only on the events and their order per task, never on the wall clock.

Task state lives in `store`, any mutable mapping task id -> plain dict: a dict in process, a
changelog-backed Faust table in the worker. The engine always writes a task's state back after
changing it, which is what a Faust table needs to persist the change.
"""

from __future__ import annotations

from collections.abc import MutableMapping

import orjson

from . import delegation
from . import event_time as et
from . import state as st
from .catalog import Catalog
from .detectors import Detector, finding, scope_rules
from .detectors.base import CERTAIN, SUSPICIOUS
from .detectors.credential_lifecycle import outliving
from .detectors.snapshot import SnapshotError
from .intent_wait import END_HELD
from .policy import ALLOW, REVOKE, Policy, fuse
from .retention import DEFAULT_RETENTION_SECONDS, Retention
from .revocation import revoke_command


class Engine:
    def __init__(self, catalog: Catalog | None = None, detectors: list[Detector] | None = None,
                 policy: Policy | None = None, store: MutableMapping | None = None,
                 registry: MutableMapping | None = None,
                 retention_seconds: float = DEFAULT_RETENTION_SECONDS,
                 allowed_lateness: float = et.DEFAULT_ALLOWED_LATENESS):
        self.catalog = catalog or Catalog()
        self.detectors = detectors if detectors is not None else scope_rules()
        self.policy = policy or Policy()
        self.store = store if store is not None else {}
        # What delegation needs to know about other tasks (see monitor.delegation).
        self.registry = registry if registry is not None else {}
        # Frees ended and expired tasks by event time (see monitor.retention).
        self.retention = Retention(self.store, self.registry, retention_seconds)
        # Seconds an event may be older than its task's latest and still be decided by its own
        # time (see monitor.event_time).
        self.allowed_lateness = allowed_lateness
        # Only the hooks a detector overrides are called: most detectors are rules that only
        # score, and a call that does nothing costs as much as a cheap rule.
        self._learners = _overriding(self.detectors, "learn_one")
        self._observers = _overriding(self.detectors, "observe_result")
        self._enders = _overriding(self.detectors, "task_ended")
        self._scorers: dict[str, list] = {}   # tool name -> score_one of the detectors it needs
        # Events not decided plainly in order, since the last take_counts() (for the metrics).
        self.counts = dict.fromkeys(HANDLING_KINDS, 0)

    # -- learned state -----------------------------------------------------------------------
    def learned(self) -> list[str]:
        """Names of the detectors that learn: those with a model state."""
        return [d.name for d in self.detectors if type(d).state is not Detector.state]

    def model_state(self) -> dict[str, bytes]:
        """Snapshot of every learned detector, by name (rules have none)."""
        return {d.name: blob for d in self.detectors if (blob := d.state()) is not None}

    def load_model_state(self, snapshot: dict[str, bytes]) -> dict[str, str]:
        """Restore each detector that has a snapshot; returns {name: reason} of those whose
        snapshot was refused (SnapshotError): they keep the state they had (fresh, in a
        starting worker) and learn on, the others load. Names of no detector here are ignored."""
        refused = {}
        for det in self.detectors:
            if det.name in snapshot:
                try:
                    det.load_state(snapshot[det.name])
                except SnapshotError as err:
                    refused[det.name] = err.reason
        return refused

    # -- entry point -------------------------------------------------------------------------
    def process(self, event: dict, lane=None) -> list[dict]:
        """Decide one validated event; returns the decisions it settles (zero or more).
        `lane` is where it was read from: the live worker gives the record's partition (the
        same for a task's intent and actions, the topics being co-partitioned); replay, eval
        and inline decisions give none, one lane. Ends of other tasks of the lane that waited
        for an intent (see monitor.intent_wait), and that this event's lane has passed, are
        settled after it."""
        wait = self.retention.intent_wait
        if event["type"] == "task.intent":
            wait.intent_read(lane, event["event_time"])
        decisions = self._process(event, lane)
        released = self._release_due(lane) if wait.any_due(lane) else None
        return decisions + released if released else decisions

    def _process(self, event: dict, lane) -> list[dict]:
        task_id = event["task_id"]
        # Free what is over by event time first; actions a freed task still held are settled.
        stored, freed = self.retention.advance(task_id, event["event_time"],
                                               self._stored(task_id))
        expired = [self._decide_without_intent(old, e) for old in freed
                   for e in _undecided(old)]
        task = stored or st.new_task(task_id)
        fp = et.fingerprint(event)
        first = et.first_risk(task, fp)
        if et.is_repeat(first):  # a retry: nothing changes; held actions are decided later
            self.counts["duplicate"] += 1
            decisions = [] if first is None else [self._repeat(task, event, first)]
            return expired + decisions if expired else decisions
        t = event["event_time"]
        mark = et.lateness_of(task, t, self.allowed_lateness)
        if mark is not None and event["type"] != "task.intent":  # (held actions wait for it)
            event = et.as_late(event, mark)
            self.counts["late"] += 1
        et.advance(task, t)
        etype = event["type"]
        if etype == "task.intent":
            decisions = self._on_intent(task, event)
            if task["ended_at"] is not None and len(decisions) > 1:
                task = st.compact_ended(task)  # its end was held for it (see _hold)
        elif etype.startswith("credential."):
            decisions = [self._on_credential(task, event)]
            et.remember(task, fp, decisions[0]["risk"])
        elif task["intent"] is None:
            decisions = self._hold(task, event, fp, lane)
        elif etype == "task.end":
            decisions = [self._on_end(task, event)]
            et.remember(task, fp, decisions[0]["risk"])
            task = st.compact_ended(task)  # keep only what an ended task still needs
        else:
            decision = self._decide_action(task, event)
            et.remember(task, fp, decision["risk"])
            decisions = [decision]
        self.store[task_id] = task
        self.retention.schedule(task)
        return expired + decisions if expired else decisions

    def take_counts(self) -> dict[str, int]:
        """The handling counts since the last call (the kinds that occurred), reset to 0."""
        counts = {k: n for k, n in self.counts.items() if n}
        if counts:
            self.counts = dict.fromkeys(HANDLING_KINDS, 0)
        return counts

    def flush(self) -> list[dict]:
        """The end of the input (a replay's last line): no intent can come any more, so the
        actions and ends still held for one (of tasks whose end was not decided) are decided
        `no_intent` now, and those tasks are freed."""
        return [self._decide_without_intent(old, e) for old in self.retention.free_waiting()
                for e in _undecided(old)]

    def assess(self, action: dict) -> dict:
        """Decide a proposed action (an agent.action, phase requested) against its task's
        current state, changing nothing: no state, no learning, no revoke command. This is the
        inline decision a gateway asks for before it runs a call; `allowed` is false when the
        stream would revoke."""
        stored = self._stored(action["task_id"])
        if stored and self.retention.over(stored, action["event_time"]):
            stored = None  # freed at this time (monitor.retention): no intent
        task = orjson.loads(orjson.dumps(stored)) if stored else st.new_task(action["task_id"])
        self._catch_up_cascade(task)
        if task["intent"] is None:
            reasons = [finding("engine", "no_intent", CERTAIN,
                               "no declared intent for this task")]
        else:
            spec = self.catalog.get(action["tool"])
            reasons = [f for score_one in self._scorers_of(spec)
                       for f in score_one(action, task, spec)]
            if task["revoked_at"] is not None:
                reasons.append(finding("engine", "task_revoked", CERTAIN,
                                       "the task's credentials were revoked earlier",
                                       revoked_at=task["revoked_at"]))
        risk = fuse(reasons)
        verdict = self.policy.verdict(risk)
        return {"v": 1, "type": "inline.decision", "task_id": action["task_id"],
                "event_id": action.get("event_id"), "tool": action["tool"],
                "allowed": verdict != REVOKE, "verdict": verdict, "risk": risk,
                "reasons": reasons}

    def _stored(self, task_id: str) -> dict | None:
        stored = self.store.get(task_id)
        if stored is not None and "per_tool" in stored["window"]:
            stored = st.upgrade(stored)   # written by an older version
        return stored

    # -- event types -------------------------------------------------------------------------
    def _on_intent(self, task: dict, intent: dict) -> list[dict]:
        # What came before the intent, in the order it happened, as if it had come after it.
        pending, task["pending"] = task["pending"], []
        self._stop_waiting(task)  # (its end waited for it: decided now, once)
        if task["ended_at"] is not None and pending:
            # The task ended before its intent was read, and what it held was decided
            # no_intent then: decide it all again, now against its intent (same decision ids).
            self.counts["intent_after_end"] += len(pending)
            task["flagged"] = False
            if any(e["type"] == "task.end" for e in pending):
                task["ended_at"] = None  # (set again when its end is decided again)
        reasons = []
        if task["intent"] is None:
            task["intent"] = st.kept_intent(intent)
            reasons.extend(delegation.register(self.registry, task["task_id"], intent))
        elif _without_time(task["intent"]) != _without_time(_as_kept(task, intent)):
            # The first declaration stands: a task cannot widen its own intent mid-flight.
            reasons.append(finding("engine", "intent_redeclared", SUSPICIOUS,
                                   "a second, different intent for a running task was ignored"))
        decisions = [self._decide(task, intent, reasons)]
        for held in sorted(pending, key=lambda e: e["event_time"]):
            decide = self._on_end if held["type"] == "task.end" else self._decide_action
            decisions.append(self._decide_held(task, held, decide))
        return decisions

    def _on_credential(self, task: dict, event: dict) -> dict:
        creds = task.setdefault("credentials", {})
        cid = event["credential_id"]
        if event["type"] == "credential.issued":
            creds[cid] = {"workload_id": event["workload_id"], "expires_at": event["expires_at"],
                          "revoked_at": None}
            delegation.add_credential(self.registry, task["task_id"], cid)
        elif cid in creds:
            known = creds[cid]["revoked_at"]
            t = event["event_time"]
            creds[cid]["revoked_at"] = t if known is None else min(known, t)
        return self._decide(task, event, [])

    def _on_end(self, task: dict, end: dict) -> dict:
        t = end["event_time"]
        task["ended_at"] = t if task["ended_at"] is None else min(task["ended_at"], t)
        decision = self._decide(task, end, outliving(task, t))
        if task["intent"] is not None:
            clean = not task["flagged"]
            for task_ended in self._enders:
                task_ended(task, clean)
        return decision

    def _hold(self, task: dict, event: dict, fp: str | None, lane) -> list[dict]:
        """An action or end of a task whose intent has not come. Actions are held, undecided,
        until it comes. So is the end, while the intents read on its lane have not passed it
        (intents and actions come on different topics, which a worker may read out of step:
        after a rebalance, or a restart on a backlog): see monitor.intent_wait. An end they
        have passed (the task never declared) decides everything `no_intent` at once, the same
        as a held end released later (_release), and they are still kept until the task is
        freed: an intent read later still has every kept event decided again against it
        (_on_intent), a violation revoked."""
        if task.get(END_HELD) is not None and len(task["pending"]) >= st.MAX_PENDING:
            # Full while its end waits: the wait ends here, rather than push the end out.
            return [*self._release(task), *self._hold(task, event, fp, lane)]
        self.counts["held_for_intent"] += 1
        held = {**event, HELD_FP: fp} if fp else event
        if task["ended_at"] is None and event["type"] == "task.end":
            until = event["event_time"] + self.allowed_lateness
            if task.get(END_HELD) is not None or not self.retention.intent_wait.passed(
                    lane, until):
                return self._hold_end(task, held, fp, lane, until)
        if task["ended_at"] is None and event["type"] != "task.end":
            et.remember(task, fp, None)  # its repeats wait for its decision
            return self._pushed_out(task, st.hold_pending(task, held))
        # Its end, after its lane's intents (no intent came), or any event after its end.
        decided = _undecided(task)
        st.hold_pending(task, held)  # (kept to decide again; one pushed out keeps its decision)
        return [self._decide_held(task, e, self._decide_without_intent)
                for e in (*decided, held)]

    def _hold_end(self, task: dict, end: dict, fp: str | None, lane, until: float
                  ) -> list[dict]:
        """Hold a task's end, undecided, for its intent, marked in its state (with its lane:
        the index of held ends is rebuilt from the states after a restart). A second end of
        a task whose end already waits is held with it, under the first one's wait."""
        et.remember(task, fp, None)  # its repeats wait for its decision
        if task.get(END_HELD) is None:
            self.counts["end_held_for_intent"] += 1
            task[END_HELD] = {"lane": lane, "until": until}
            self.retention.intent_wait.hold(task["task_id"], lane, until)
        # (Full only when this end is its first: an action pushed out is decided.)
        return self._pushed_out(task, st.hold_pending(task, end))

    def _pushed_out(self, task: dict, pushed_out: dict | None) -> list[dict]:
        """The decision of an undecided held event pushed out of a full hold: no_intent."""
        return [] if pushed_out is None else [
            self._decide_held(task, pushed_out, self._decide_without_intent)]

    def _release(self, task: dict) -> list[dict]:
        """The wait for a task's intent is over: decide what it holds, its end included,
        `no_intent` in event order, and keep it all (an intent read even later decides it
        again: _on_intent)."""
        self._stop_waiting(task)
        return [self._decide_held(task, e, self._decide_without_intent)
                for e in _undecided(task)]

    def _stop_waiting(self, task: dict) -> None:
        """Its end waits no more (its intent came, or the wait is over): unmark and unindex."""
        if task.pop(END_HELD, None) is not None:
            self.retention.intent_wait.forget(task["task_id"])

    def _release_due(self, lane) -> list[dict]:
        """Release the held ends of `lane` that its intents have passed (read from the store:
        any task's state, written back after)."""
        decisions = []
        for tid in self.retention.intent_wait.due(lane):
            task = self._stored(tid)
            if task is None or task.get(END_HELD) is None:
                continue  # its intent came, or it was freed, since
            decisions.extend(self._release(task))
            self.store[tid] = task
            self.retention.schedule(task)
        return decisions

    def _decide_held(self, task: dict, action: dict, decide) -> dict:
        """Decide a held action and remember its risk for its repeats."""
        decision = decide(task, action)
        et.remember(task, action.get(HELD_FP), decision["risk"])
        return decision

    # -- deciding ----------------------------------------------------------------------------
    def _decide_action(self, task: dict, action: dict) -> dict:
        self._catch_up_cascade(task)
        spec = self.catalog.get(action["tool"])
        reasons = []
        completed = action["phase"] == "completed"
        if completed and st.record_completion(task, action) or \
                not completed and st.request_after_completion(task, action):
            pass  # the call's other event, which came first, was scored and counted
        else:
            # A request, or a completion whose request this monitor never saw: score it.
            for score_one in self._scorers_of(spec):
                reasons.extend(score_one(action, task, spec))
            for learn_one in self._learners:
                learn_one(action, task, spec, reasons)
            st.record_action(task, action, spec)
        if completed:
            for observe_result in self._observers:
                observe_result(action, task, spec)
        if task["revoked_at"] is not None:
            reasons.append(finding("engine", "task_revoked", CERTAIN,
                                   "the task's credentials were revoked earlier",
                                   revoked_at=task["revoked_at"]))
        return self._decide(task, action, reasons)

    def _scorers_of(self, spec) -> list:
        scorers = self._scorers.get(spec.name)
        if scorers is None:
            if len(self._scorers) >= MAX_TOOLS_CACHED:  # bounded: tool names come from events
                self._scorers.clear()
            scorers = self._scorers[spec.name] = [d.score_one for d in self.detectors
                                                  if d.applies_to(spec)]
        return scorers

    def _decide_without_intent(self, task: dict, event: dict) -> dict:
        """A held event whose intent has not come."""
        self.counts["no_intent"] += 1
        if event["type"] == "task.end":
            return self._on_end(task, event)
        reasons = [finding("engine", "no_intent", SUSPICIOUS,
                           "action for a task that never declared an intent")]
        return self._decide(task, event, reasons)

    def _repeat(self, task: dict, event: dict, risk: float) -> dict:
        """The decision of a repeated event: the first delivery's risk and verdict, with no
        command (the first one's stands) and nothing changed."""
        reasons = [finding("engine", "duplicate_event", risk,
                           "a repeat of an event already decided; its decision stands",
                           first_risk=risk)]
        return self._record(task, event, reasons, risk, self.policy.verdict(risk))

    def _decide(self, task: dict, event: dict, reasons: list[dict]) -> dict:
        late_from = event.get(et.LATE_KEY)
        if late_from is not None:
            reasons.append(finding("engine", "late_event", 0.0,
                                   "an event later than the allowed lateness: decided at its "
                                   "task's latest event time", event_time=late_from,
                                   decided_at=event["event_time"],
                                   allowed_lateness=self.allowed_lateness))
        risk = fuse(reasons)
        verdict = self.policy.verdict(risk)
        decision = self._record(task, event, reasons, risk, verdict)
        if verdict != ALLOW:
            task["flagged"] = True
        if verdict == REVOKE:
            decision["command"] = self._revoke(task, event, decision)
            decision["cascade"] = self._cascade(task, event, decision)
        return decision

    def _record(self, task: dict, event: dict, reasons: list[dict], risk: float,
                verdict: str) -> dict:
        return {
            "v": 1,
            "type": "decision",
            "decision_id": _decision_id(event),
            "event_id": event.get("event_id"),
            "event_type": event["type"],
            "task_id": task["task_id"],
            "agent_id": event.get("agent_id") or (task["intent"] or {}).get("agent_id"),
            "tool": event.get("tool"),
            "phase": event.get("phase"),
            "event_time": event.get(et.LATE_KEY, event["event_time"]),
            "verdict": verdict,
            "risk": risk,
            "reasons": reasons,
            "command": None,
            "cascade": [],
        }

    def _revoke(self, task: dict, event: dict, decision: dict) -> dict | None:
        """A revoke command for the credentials not revoked yet, or None if there are none."""
        intent = task["intent"] or {}
        creds = list(intent.get("credentials") or []) + [
            c for c in task.get("credentials") or {} if c not in (intent.get("credentials") or [])]
        if event.get("credential_id") and event["credential_id"] not in creds:
            creds.append(event["credential_id"])
        fresh = [c for c in creds if c not in task["revoked"]]
        first = task["revoked_at"] is None
        if not fresh and not first:
            return None
        task["revoked"].extend(fresh)
        if first:
            task["revoked_at"] = event["event_time"]
        return revoke_command(task, fresh, decision)


    def _cascade(self, task: dict, event: dict, decision: dict) -> list[dict]:
        """One command per credential of every other task the revocation reaches: the task's
        descendants, or, when a child escalated beyond its parent, the parent and all of its
        descendants. Tasks already revoked are skipped, so no credential is commanded twice."""
        entry = self.registry.get(task["task_id"])
        root = task["task_id"]
        if entry and entry["parent"] and any(r["detector"] == "delegation"
                                             and r["risk"] >= self.policy.revoke_at
                                             for r in decision["reasons"]):
            root = entry["parent"]
        reached = [t for t in delegation.subtree(self.registry, root)  # (freed tasks skipped)
                   if t != task["task_id"] and self.registry.get(t) is not None
                   and delegation.revoked_at(self.registry, t) is None]
        delegation.mark_revoked(self.registry, [task["task_id"], *reached],
                                event["event_time"])
        commands = []
        for tid in reached:
            other = self.registry[tid]
            holder = {"task_id": tid, "intent": {"agent_id": other.get("agent_id"),
                                                 "workload_id": other.get("workload_id")}}
            for cred in other["credentials"]:
                commands.append(revoke_command(holder, [cred], decision,
                                               reason=f"cascade:{task['task_id']}"))
        return commands

    def _catch_up_cascade(self, task: dict) -> None:
        """A cascade started on another partition may have revoked this task: take it over, so
        its credentials are not commanded again and its actions are refused."""
        t = delegation.revoked_at(self.registry, task["task_id"])
        if t is not None and task["revoked_at"] is None:
            task["revoked_at"] = t
            task["revoked"].extend(self.registry[task["task_id"]]["credentials"])


MAX_TOOLS_CACHED = 10_000
HANDLING_KINDS = ("duplicate", "late", "held_for_intent", "end_held_for_intent", "no_intent",
                  "intent_after_end")
HELD_FP = "held_fingerprint"  # on a held action: its fingerprint (monitor.event_time)


def _undecided(task: dict) -> list[dict]:
    """The held events of a task without intent that no decision has settled yet (at its
    end, its release, or when it is freed), in event order: all of them, its end too if it waited (once its end was decided, they all
    were: see Engine._hold)."""
    if task["ended_at"] is not None:
        return []
    return sorted(task["pending"], key=lambda e: e["event_time"])


def _overriding(detectors: list[Detector], hook: str) -> list:
    """The bound `hook` of each detector that overrides the base class's no-op, in order."""
    return [getattr(d, hook) for d in detectors
            if getattr(type(d), hook) is not getattr(Detector, hook)]


def _decision_id(event: dict) -> str:
    if event.get("event_id"):
        return f"{event['type']}:{event['event_id']}"
    if event.get("credential_id"):  # several credential events per task, often without ids
        return f"{event['type']}:{event['task_id']}:{event['credential_id']}"
    return f"{event['type']}:{event['task_id']}"


def _as_kept(task: dict, intent: dict) -> dict:
    """The intent as the task's state keeps it: an ended task keeps less of it, and the same
    intent read again after a crash (at least once) must compare equal."""
    kept = st.kept_intent(intent)
    return st.ended_intent(kept) if task["ended_at"] is not None else kept


def _without_time(intent: dict) -> dict:
    return {k: v for k, v in intent.items() if k != "event_time"}
