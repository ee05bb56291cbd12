"""Sequence model: how improbable is this move, for this kind of task?

A move is a step from the previous action's state to this one's, where a state is the tool's
strongest capability class, whether the intent declared it, and whether the task had read
suspicious content just before. Transition counts are learned online with river's
`proba.Multinomial`, one per (intent class, previous state), where the intent class is the set
of capability classes of the declared tools. It learns only from tasks that ended clean, so the
attacks it should flag never teach it that they are normal. A move seen less than 2% of the time
(with Laplace smoothing) in a context with enough history is flagged, e.g. a read of untrusted
content followed by an outbound send that the goal's tools never do.
"""

from functools import lru_cache

from river import proba

from . import snapshot
from .base import Detector, LastScored, finding

SEVERITY = ("identity", "money", "delete", "send", "write", "read")  # strongest first
MIN_HISTORY = 30
IMPROBABLE = 0.02
RISK = 0.5
MAX_SEQUENCE = 32
# A task's path is kept in its state as one character per state (32 states: 34 bytes instead
# of about 360 as names); the model and its findings use the names.
STATES = [f"{cap}:{declared}:{tainted}" for cap in SEVERITY for declared in "du"
          for tainted in "cs"]
CODE = {name: chr(ord("a") + i) for i, name in enumerate(STATES)}
NAME = {code: name for name, code in CODE.items()}
# Contexts there can be: an intent class (a set of capability classes) and a previous state.
MAX_CONTEXTS = 2 ** len(SEVERITY) * (len(STATES) + 1)
MAX_COUNT = 2**53  # beyond, counts would not be exact as floats
SNAPSHOT_VERSION = 1


@lru_cache(maxsize=4096)
def _strongest(capabilities: frozenset[str]) -> str:
    return next((c for c in SEVERITY if c in capabilities), "read")


def capability(spec) -> str:
    return _strongest(spec.capabilities)


class SequenceModel(Detector):
    name = "sequence_model"

    def __init__(self, catalog):
        self.catalog = catalog
        self.models: dict[str, proba.Multinomial] = {}
        self._scored = LastScored()   # the state of the action scored, for learn_one

    def intent_class(self, task) -> str:
        return self._intent_class(tuple(task["intent"]["tools"]))

    @lru_cache(maxsize=4096)  # noqa: B019 -- one detector per engine, the catalog is fixed
    def _intent_class(self, tools: tuple[str, ...]) -> str:
        caps = sorted({capability(self.catalog.get(t)) for t in tools})
        return "+".join(caps) or "none"

    def _state(self, action, task, spec) -> str:
        declared = "d" if action["tool"] in task["intent"]["tools"] else "u"
        tainted = "s" if (task.get("provenance") or {}).get("suspicion", 0) >= 0.5 else "c"
        return f"{capability(spec)}:{declared}:{tainted}"

    def _context(self, task) -> str:
        path = _path(task)
        return f"{self.intent_class(task)}|{NAME[path[-1]] if path else 'start'}"

    def score_one(self, action, task, spec):
        state = self._state(action, task, spec)
        self._scored.put(action, state)
        context = self._context(task)
        model = self.models.get(context)
        if model is None or model.n_samples < MIN_HISTORY:
            return []
        p = (model.counts.get(state, 0) + 1) / (model.n_samples + len(model.counts) + 1)
        if p >= IMPROBABLE:
            return []
        return [finding(self.name, "improbable_move", RISK,
                        f"move to {state} is rare for this kind of task (p={p:.3f})",
                        context=context, state=state, probability=round(p, 4))]

    def learn_one(self, action, task, spec, findings):
        # Only the path is recorded here; the counts learn when the task ends clean.
        state = self._scored.get(action) or self._state(action, task, spec)
        task["sequence"] = (_path(task) + CODE[state])[-MAX_SEQUENCE:]

    def task_ended(self, task, clean):
        if not clean or not task["intent"]:
            return
        cls = self.intent_class(task)
        previous = "start"
        for state in map(NAME.__getitem__, _path(task)):
            key = f"{cls}|{previous}"
            model = self.models.get(key)
            if model is None:  # (not setdefault: a Multinomial costs ~16 us to build)
                model = self.models[key] = proba.Multinomial()
            model.update(state)
            previous = state

    # -- persistence: each context's counts (all a Multinomial's scores read) -----------------
    def state(self) -> bytes:
        return snapshot.dump(self.name, SNAPSHOT_VERSION, {
            "counts": {key: dict(model.counts) for key, model in self.models.items()}})

    def load_state(self, blob: bytes) -> None:
        doc = snapshot.load(blob, self.name, SNAPSHOT_VERSION)
        contexts = snapshot.field(doc, "counts", dict)
        snapshot.check(len(contexts) <= MAX_CONTEXTS, f"more than {MAX_CONTEXTS} contexts")
        models = {}
        for key, counts in contexts.items():
            where = f"counts of {snapshot.short(key)}"
            snapshot.check(isinstance(counts, dict), f"{where} are not an object")
            snapshot.check(counts.keys() <= CODE.keys(), f"an unknown state in {where}")
            snapshot.items(list(counts.values()), int, where)
            snapshot.check(all(0 <= n < MAX_COUNT for n in counts.values()),
                           f"a count out of range in {where}")
            # Multinomial(counts) counts them in their order, as the saved model did.
            models[key] = proba.Multinomial(counts)
        self.models = models


def _path(task) -> str:
    path = task.get("sequence") or ""
    if isinstance(path, list):  # a state of version 0.1.0: the states' names
        path = "".join(CODE[name] for name in path)
    return path
