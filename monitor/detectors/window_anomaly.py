"""Window anomaly: Half-Space Trees (river's, see half_space.py) over the task's window features.

Features (each scaled into [0, 1], as Half-Space Trees need): how many actions, the share that
were side effects, errors, distinct targets per action, undeclared tools, the recent rate, and
the highest suspicion of the content read. The forest is seeded, so scores are reproducible.
It learns from actions that raised no alert, so hijacks do not become the norm. Its finding is
deliberately mild: an unusual shape of activity is a reason to look, not to revoke. It is
scored on side effects and open-world calls only (see score_one).
"""

from . import snapshot
from .base import Detector, LastScored, finding
from .half_space import HalfSpaceForest

ANOMALOUS = 0.9
RISK = 0.3
MIN_LEARNED = 200
SNAPSHOT_VERSION = 1

# The order of window_features' values.
FEATURES = ("actions", "side_effects", "errors", "targets", "undeclared", "rate", "suspicion")


def window_features(action, task, spec) -> tuple[float, ...]:
    w = task["window"]
    n = w["actions"] + 1
    undeclared = w["undeclared"] + (action["tool"] not in task["intent"]["tools"])
    return (
        min(n, 50) / 50,
        (w["side_effects"] + spec.side_effecting) / n,
        w["errors"] / n,
        min(len(w["targets"]) / n, 1.0),
        undeclared / n,
        min(len(w["recent_times"]) + 1, 30) / 30,
        (task.get("provenance") or {}).get("suspicion", 0.0),
    )


class WindowAnomaly(Detector):
    name = "window_anomaly"

    def __init__(self, seed: int = 42):
        self.model = HalfSpaceForest(FEATURES, n_trees=10, height=8, window_size=100, seed=seed)
        self.learned = 0
        self._scored = LastScored()   # the features of the action scored, for learn_one

    def applies_to(self, spec):
        # Scored where an unusual window can change a verdict: side effects and calls out of
        # the system. On a plain read its mild risk alone never alerts; skipping those saves
        # most of the forest's cost (it still learns from every action).
        return spec.watched

    def score_one(self, action, task, spec):
        self._scored.put(action, None)  # (not scored below: learn_one computes its own)
        if self.learned < MIN_LEARNED or not spec.watched:
            return []
        feats = window_features(action, task, spec)
        self._scored.put(action, feats)
        score = self.model.score_one(feats)
        if score < ANOMALOUS:
            return []
        return [finding(self.name, "unusual_window", RISK,
                        f"the task's activity is unusual (anomaly score {score:.2f})",
                        score=round(score, 4),
                        features={k: round(v, 3) for k, v in zip(FEATURES, feats)})]

    def learn_one(self, action, task, spec, findings):
        if any(f["risk"] >= 0.5 for f in findings):
            return
        feats = self._scored.get(action) or window_features(action, task, spec)
        self.model.learn_one(feats)
        self.learned += 1

    def state(self) -> bytes:
        return snapshot.dump(self.name, SNAPSHOT_VERSION,
                             {"learned": self.learned, "forest": self.model.to_plain()})

    def load_state(self, blob: bytes) -> None:
        doc = snapshot.load(blob, self.name, SNAPSHOT_VERSION)
        learned = snapshot.field(doc, "learned", int)
        snapshot.check(learned >= 0, "learned: negative")
        model = HalfSpaceForest.from_plain(snapshot.field(doc, "forest", dict))
        snapshot.check(model.features == FEATURES, f"forest: its features are not {FEATURES}")
        self.model, self.learned = model, learned
