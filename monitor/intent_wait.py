"""The wait for an intent read after its task's end, per lane (input partition).

Intents and actions are on two topics, co-partitioned by task id: a task's intent and its
actions are on the same partition number of each. Kafka orders nothing across the two, so after
a rebalance, or a restart on a backlog, a worker can read a task's actions and its `task.end`
before its intent. Deciding them `no_intent` at the end alerts people about honest tasks.

So a `task.end` of a task without intent waits, undecided with the actions it holds, while the
intents read on its lane have not passed it: until the highest event time of a `task.intent`
read on that lane (this lane's intents watermark) is later than the end's time plus the allowed
lateness. Intents of one partition are read in order, and a task's intent comes before its end
in event time: once the lane's intents are past the end, the task's own intent has been read
if it is on the bus at all (produced within the lateness of its time).

Why a lane, not the engine's watermark (the highest event time on any partition): a trace
produced faster than real time lets the actions partition run any distance ahead of the intents
(6,000 s in a learned-model test); a wait by that watermark ran out before the intents were
read. A lane's intents watermark moves only as that lane's intents are read.

What this module keeps is plain data, in process only: the watermarks (after a restart they
start empty, which only makes ends wait longer, the safe side) and an index of the held ends
per lane, a heap of (release time, task id), which `Retention.rebuild` rebuilds from the task
states (a held end is marked in its state, `END_HELD`, with its lane and release time). Index
entries are hints, checked against this index's own record of the task (and by the engine
against the stored state): a task whose intent came, that was released or freed, or that left
with its partition, is skipped.

Replay, eval and inline decisions give no lane: all their events are one lane (None).
"""

from __future__ import annotations

import heapq

END_HELD = "end_held"   # state key of a task whose end waits: {"lane": ..., "until": ...}
RELEASE_BATCH = 64      # most held ends released after one event (bounds its latency)


class IntentWait:
    def __init__(self, batch: int = RELEASE_BATCH):
        self.batch = batch
        self.watermarks: dict = {}     # lane -> highest task.intent event time read on it
        self._heaps: dict = {}         # lane -> [(until, task id)]
        self._held: dict[str, tuple] = {}   # task id -> (lane, until) of its held end

    def intent_read(self, lane, t: float) -> None:
        mark = self.watermarks.get(lane)
        if mark is None or t > mark:
            self.watermarks[lane] = t

    def passed(self, lane, until: float) -> bool:
        """True once the lane's intents are later than `until`: no need to wait any more."""
        mark = self.watermarks.get(lane)
        return mark is not None and mark > until

    def hold(self, task_id: str, lane, until: float) -> None:
        self._held[task_id] = (lane, until)
        heapq.heappush(self._heaps.setdefault(lane, []), (until, task_id))

    def note(self, task_id: str, task: dict) -> None:
        """Index a stored state's held end, if it has one not indexed yet (a rebuild)."""
        held = task.get(END_HELD)
        if held is not None and task_id not in self._held:
            self.hold(task_id, held["lane"], held["until"])

    def keep_only(self, present: set) -> None:
        """Forget the held ends of tasks no longer in the store (their partition went to
        another worker); their heap entries are skipped when popped."""
        for tid in [t for t in self._held if t not in present]:
            del self._held[tid]

    def forget(self, task_id: str) -> None:
        self._held.pop(task_id, None)

    def any_due(self, lane) -> bool:
        """A cheap check, after every event: has the lane a held end its intents passed?"""
        heap = self._heaps.get(lane)
        return bool(heap) and self.passed(lane, heap[0][0])

    def due(self, lane) -> list[str]:
        """The tasks of `lane` whose held end its intents have passed (up to `batch`); they
        are forgotten here, the caller releases them."""
        if not self.any_due(lane):
            return []
        heap, mark = self._heaps[lane], self.watermarks[lane]
        due = []
        while heap and heap[0][0] < mark and len(due) < self.batch:
            until, tid = heapq.heappop(heap)
            if self._held.get(tid) == (lane, until):
                del self._held[tid]
                due.append(tid)
        return due

    def waiting(self) -> int:
        """How many held ends are indexed."""
        return len(self._held)
