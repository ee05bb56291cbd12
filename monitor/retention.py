"""Retention: free the state of tasks that are over, by event time, so memory stays bounded.

A task is over, and its state (and its delegation registry entry) is freed, once the event time
passes its deadline:

  - ended (task.end seen):              ended_at + retention
  - expired (intent with expires_at):   expires_at + retention (the grace period is the same
                                        setting: a task that never sent task.end is treated
                                        like one that ended when its time to live ran out)
  - no intent yet (actions held, its end, or credential events only):
                                        the latest time it holds (held events' times, its end,
                                        its credentials' expiry or revocation) + retention, so
                                        held actions of a task whose intent never comes expire
                                        too (decided `no_intent` when freed, if its end has not
                                        decided them already)
  - an intent without expires_at that never ends: never (see "Not covered" below).

Time is event time only, never the wall clock, so a replay frees exactly what the live engine
freed. Two mechanisms, one rule (a state is over at time t when t > its deadline):

  - Lazy: before an event is processed, its own task's state is checked against the event's
    own time. A state that is over is dropped and the event starts a fresh task. This depends
    only on the task's own events, so decisions stay deterministic whatever the order of other
    tasks' events (partitions interleave differently live and in replay).
  - Sweep: a watermark, the highest event time seen, and a heap of (deadline, task id). Before
    each event, up to `batch` due entries are popped; each is checked against the state in
    the store (a task touched since it was scheduled has a later deadline and is rescheduled,
    not freed) and freed when over. One heap entry per deadline that moved earlier, plus one
    per reschedule: amortised O(log n) per task, never a scan of the store per event. The
    sweep never frees the task of the current event (the lazy check decides that one by its
    own time).
  The sweep can only change a decision for an event that arrives after the watermark has
  passed its task's deadline while its own time has not (an event later than the other
  partitions this engine serves by more than that margin): such a late event finds its task
  freed.

What an event for a freed task does: it looks like a task with no intent. Actions are held, with
no decision yet (state.hold_pending keeps up to 64, the oldest pushed out is decided
`no_intent`), until an intent arrives (they are then decided in event order, as if they had
come after it), the task's end stops waiting for one (the end waits while the intents of its
lane have not passed it, monitor.intent_wait; then the held actions and the end are decided
`no_intent`, and kept: an intent read after that has them all decided again against it, see
Engine._hold) or the held actions expire (deadline above: decided `no_intent` when freed, a
waiting end with them; a replay decides them so at its end, `Engine.flush`). So a freed task's late
action ends up alerted, never allowed, but later than before and no longer revoked as
`after_task_end`: the retention period is how long after its end (or expiry) a task's misuse
is still refused at once with its full context. `Engine.assess`
(inline decisions) applies the same lazy rule, and answers `no_intent` (deny) for a freed task.

After a restart the heap is empty: `rebuild()` indexes every task of the store (it runs by
itself before the first event; the worker calls it again after each recovery, for partitions
it has just been assigned). Tasks already indexed are skipped.

Freeing deletes from the store and the registry (`del store[task_id]`): in the worker that is a
changelog tombstone, which must go to the task's own partition whatever event is being
processed (the worker's tables are keyed by partitioner for that reason).

The delegation registry: a freed task's entry is deleted when none of its children still has
an entry, otherwise it is kept (marked `state_freed`) because a cascade from an ancestor must
still reach the live descendants through it; it is deleted, and the chain of freed ancestors
above it, when its last child goes. A child declared after its parent's entry is gone is
alerted `parent_unknown`, as for any unknown parent.

Not covered: a task whose intent has no expires_at and that never sends task.end is held for
ever (there is no deadline to go by; an idle timeout would be a policy decision).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import MutableMapping

from .intent_wait import END_HELD, IntentWait

# One hour after a task is over (see monitor.config.Settings.retention_seconds).
DEFAULT_RETENTION_SECONDS = 3600.0
SWEEP_BATCH = 64          # most tasks freed by the sweep before one event (bounds latency)
FREED = "state_freed"     # registry entry kept only as a link to live descendants


def deadline(task: dict, retention: float) -> float | None:
    """Event time after which the task's state is freed; None while it may still run."""
    intent = task["intent"]
    if intent is None:
        latest = max((e["event_time"] for e in task["pending"]), default=float("-inf"))
        if task["ended_at"] is not None:
            latest = max(latest, task["ended_at"])
        for cred in (task.get("credentials") or {}).values():
            latest = max(latest, cred["expires_at"], cred["revoked_at"] or latest)
        return latest + retention
    if task["ended_at"] is not None:
        return task["ended_at"] + retention
    expires = intent.get("expires_at")
    return None if expires is None else expires + retention


class Retention:
    """The engine's retention index over `store` (task states) and `registry` (delegation)."""

    def __init__(self, store: MutableMapping, registry: MutableMapping,
                 seconds: float = DEFAULT_RETENTION_SECONDS):
        if not seconds >= 0:
            raise ValueError("retention seconds must be >= 0")
        self.store = store
        self.registry = registry
        self.seconds = seconds
        self.batch = SWEEP_BATCH
        self.watermark: float | None = None   # highest event time seen
        self.freed = 0
        self._heap: list[tuple[float, str]] = []
        self._scheduled: dict[str, float] = {}   # task id -> earliest deadline in its heap
        # Tasks held that have not ended -> their expires_at (inf: none): what `running()`
        # counts, kept up to date at each write so that counting never reads the store.
        self._open: dict[str, float] = {}
        # Ends waiting for their intent, per lane (see monitor.intent_wait): indexed here
        # because their index is rebuilt from the same stored states, in the same pass.
        self.intent_wait = IntentWait()
        self._rebuilt = False

    # -- the engine's hooks --------------------------------------------------------------------
    def over(self, task: dict, t: float) -> bool:
        d = deadline(task, self.seconds)
        return d is not None and t > d

    def advance(self, task_id: str, t: float, stored: dict | None
                ) -> tuple[dict | None, list[dict]]:
        """Before an event of task_id at event time t whose stored state is `stored`: move the
        watermark, free what it has passed, and drop `stored` if it is over at t.
        Returns (the state to go on with or None, the states freed)."""
        if not self._rebuilt:
            self.rebuild()
        mark = self.watermark
        if mark is None or t > mark:
            self.watermark = mark = t
        heap = self._heap
        freed = self._sweep(heap, mark, task_id) if heap and heap[0][0] < mark else []
        if stored is not None and self.over(stored, t):
            # The event overwrites the state right after: no delete needed.
            freed.append(self._free(task_id, stored, delete=False))
            stored = None
        return stored, freed

    def schedule(self, task: dict) -> None:
        """After a task's state was written: index it at its deadline (if it has one)."""
        tid = task["task_id"]
        self._note_open(tid, task)
        d = deadline(task, self.seconds)
        if d is None:
            return
        known = self._scheduled.get(tid)
        if known is None or d < known:  # a later deadline is found when the earlier pops
            self._scheduled[tid] = d
            heapq.heappush(self._heap, (d, tid))

    def rebuild(self) -> int:
        """Index every stored task not indexed yet (after a restart or a recovery); returns
        how many were added. One pass over the store. Tasks no longer in the store (their
        partition went to another worker) stop counting as running."""
        self._rebuilt = True
        added = 0
        present = list(self.store)
        held = set(present)
        for tid in [t for t in self._open if t not in held]:
            del self._open[tid]
        self.intent_wait.keep_only(held)
        for tid in present:
            task = self.store.get(tid)
            if task is None:
                continue
            self._note_open(tid, task)
            self.intent_wait.note(tid, task)
            if tid in self._scheduled:
                continue
            d = deadline(task, self.seconds)
            if d is None:
                continue
            self._scheduled[tid] = d
            heapq.heappush(self._heap, (d, tid))
            added += 1
        return added

    def free_waiting(self) -> list[dict]:
        """Free every task that holds actions for an intent that has not come and has not
        ended (the end of a replay: neither will come); returns their states."""
        if not self._rebuilt:
            self.rebuild()
        freed = []
        for tid in list(self._scheduled):
            task = self.store.get(tid)
            if task is not None and task["intent"] is None and task["ended_at"] is None \
                    and task["pending"]:
                freed.append(self._free(tid, task))
        return freed

    async def on_recover(self) -> None:
        """A Faust table recovery callback (`tasks.on_recover(engine.retention.on_recover)`)."""
        self.rebuild()

    def running(self) -> int:
        """Tasks held that are running: not ended, and not past their expires_at at the
        watermark. One pass over the running tasks' expiry times (measured 2.5 ms per 100,000):
        for a periodic gauge, not for every event."""
        mark = self.watermark
        if mark is None:
            return len(self._open)
        return sum(expires >= mark for expires in self._open.values())

    def stats(self) -> dict:
        return {"indexed": len(self._scheduled), "heap_entries": len(self._heap),
                "freed": self.freed, "watermark": self.watermark,
                "ends_waiting": self.intent_wait.waiting()}

    def _note_open(self, task_id: str, task: dict) -> None:
        # (A task whose end waits for its intent, monitor.intent_wait, has ended too.)
        if task["ended_at"] is not None or END_HELD in task:
            self._open.pop(task_id, None)
            return
        intent = task["intent"]
        expires = intent.get("expires_at") if intent is not None else None
        self._open[task_id] = math.inf if expires is None else expires

    # -- freeing -------------------------------------------------------------------------------
    def _sweep(self, heap: list, mark: float, current: str) -> list[dict]:
        freed: list[dict] = []
        skipped = []
        while heap and heap[0][0] < mark and len(freed) < self.batch:
            d, tid = heapq.heappop(heap)
            if self._scheduled.get(tid) != d:
                continue  # superseded by an earlier deadline, or already freed
            if tid == current:
                skipped.append((d, tid))
                continue
            task = self.store.get(tid)
            now = None if task is None else deadline(task, self.seconds)
            if now is None:
                del self._scheduled[tid]
            elif now >= mark:  # touched since: not over yet
                self._scheduled[tid] = now
                heapq.heappush(heap, (now, tid))
            else:
                freed.append(self._free(tid, task))
        for item in skipped:
            heapq.heappush(heap, item)
        return freed

    def _free(self, task_id: str, task: dict, delete: bool = True) -> dict:
        self._scheduled.pop(task_id, None)
        self._open.pop(task_id, None)
        self.intent_wait.forget(task_id)
        if delete:
            del self.store[task_id]
        self._free_entry(task_id)
        self.freed += 1
        return task

    def _free_entry(self, task_id: str) -> None:
        registry = self.registry
        entry = registry.get(task_id)
        if entry is None:
            return
        if any(registry.get(c) is not None for c in entry["children"]):
            if not entry.get(FREED):
                entry[FREED] = True
                registry[task_id] = entry
            return
        del registry[task_id]
        seen = {task_id}
        parent_id = entry["parent"]
        while parent_id and parent_id not in seen:  # freed ancestors left only as links
            seen.add(parent_id)
            parent = registry.get(parent_id)
            if parent is None or not parent.get(FREED) or any(
                    registry.get(c) is not None for c in parent["children"]):
                return
            del registry[parent_id]
            parent_id = parent["parent"]
