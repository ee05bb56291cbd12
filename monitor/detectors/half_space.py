"""river's Half-Space Trees, same trees and same scores, at a fraction of the cost.

river's `HalfSpaceTrees.score_one` reads only the masses of the previous window (`r_mass`);
`learn_one` only counts visits along the point's path (`l_mass`) and, every `window_size` points,
pivots (r_mass = l_mass, l_mass = 0). So nothing a score reads changes between pivots, and the
learning can wait for the pivot: the points are buffered, and their paths through every tree are
found at once with numpy and counted. River's missing-feature branch (go down the heavier child)
is never needed: every point here carries every feature, as a sequence in `features`' order.

The trees are river's own (river builds them, from its seed), laid out flat in heap order: node
g of tree t is t * width + i, where the heap index i has children 2i+1 and 2i+2. For the single
point a score walks, plain Python over flat lists beats numpy's per-call overhead; at each pivot
the walk is prepared so that it stops where river's would, with river's sum at hand.

Scores equal river's (==): every partial score is a sum of integers (far below 2**53), so the
float arithmetic is exact in any order, and the final normalisation is river's.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence

import numpy as np
from river.anomaly import HalfSpaceTrees

from . import snapshot


class HalfSpaceForest:
    def __init__(self, features: Sequence[str], n_trees: int = 10, height: int = 8,
                 window_size: int = 250, seed: int | None = None):
        model = HalfSpaceTrees(n_trees=n_trees, height=height, window_size=window_size,
                               seed=seed)
        self._adopt(model, features)

    @classmethod
    def from_river(cls, model: HalfSpaceTrees, features: Sequence[str]) -> HalfSpaceForest:
        """The model a river `HalfSpaceTrees` is (trees, masses, place in the window), taking
        points in the order of `features`."""
        forest = cls.__new__(cls)
        forest._adopt(model, features)
        return forest

    def _adopt(self, model: HalfSpaceTrees, features: Sequence[str]) -> None:
        self.features = tuple(features)
        self.n_trees, self.height = model.n_trees, model.height
        self.window_size, self.size_limit = model.window_size, model.size_limit
        self.max_score = model._max_score
        nodes = [n for tree in _with_trees(model, self.features).trees for n in _heap_order(tree)]
        index = {name: i for i, name in enumerate(self.features)}
        # Per node, leaves included (their feature and threshold are never read).
        self._feature = np.array([index[n.feature] if hasattr(n, "feature") else 0
                                  for n in nodes], dtype=np.intp)
        self._threshold = np.array([getattr(n, "threshold", 0.0) for n in nodes])
        learned = bool(model.trees)  # a model that has not learned has no trees, no masses
        self._r_mass = np.array([n.r_mass if learned else 0 for n in nodes], dtype=np.int64)
        self._l_mass = np.array([n.l_mass if learned else 0 for n in nodes], dtype=np.int64)
        # This window's points not yet counted into _l_mass, and how many the window holds.
        self._pending: list[Sequence[float]] = []
        self._counter = model.counter
        self._first_window = model._first_window
        self._prepare()

    def _prepare(self) -> None:
        """What follows from the trees' shape alone."""
        width = 2 ** (self.height + 1) - 1
        heap = np.tile(np.arange(width), self.n_trees)
        roots = np.arange(self.n_trees) * width
        tree_start = np.repeat(roots, width)
        self._roots = roots
        self._right = tree_start + 2 * heap + 2  # past the leaves: never followed
        depth = np.array([(i + 1).bit_length() - 1 for i in range(width)])
        self._depth_pow = np.tile(1 << depth, self.n_trees)
        self._leaf = np.tile(depth == self.height, self.n_trees)
        parent = tree_start + (heap - 1) // 2
        self._levels = []  # per depth below the root: its nodes (all trees), their parents
        for d in range(1, self.height + 1):
            nodes = np.flatnonzero(np.tile(depth == d, self.n_trees))
            self._levels.append((nodes, parent[nodes]))
        # score_one's lists
        self._walk_roots = roots.tolist()
        self._walk_right = self._right.tolist()
        self._walk_feature = self._feature.tolist()
        self._walk_threshold = self._threshold.tolist()
        self._prepare_walk()

    # -- learning ----------------------------------------------------------------------------
    def learn_one(self, x: Sequence[float]) -> None:
        """Learn x (kept as it is until the pivot: a tuple, or a sequence no one changes)."""
        self._pending.append(x)
        self._counter += 1
        if self._counter == self.window_size:
            self._count_pending()
            self._r_mass, self._l_mass = self._l_mass, np.zeros_like(self._l_mass)
            self._first_window = False
            self._counter = 0
            self._prepare_walk()

    def _count_pending(self) -> None:
        """Add to _l_mass every node each pending point visits, in every tree at once (one
        entry per point and tree)."""
        n_points, n_features = len(self._pending), len(self.features)
        if not n_points:
            return
        points = np.fromiter(itertools.chain.from_iterable(self._pending), dtype=np.float64,
                             count=n_points * n_features)
        row_start = np.repeat(np.arange(n_points) * n_features, self.n_trees)
        node = np.tile(self._roots, n_points)
        visited = [node]
        for _ in range(self.height):
            below = points.take(row_start + self._feature.take(node)) < \
                self._threshold.take(node)
            node = self._right.take(node) - below  # river: left if value < threshold
            visited.append(node)
        self._l_mass += np.bincount(np.concatenate(visited), minlength=self._l_mass.size)
        self._pending = []

    # -- scoring -----------------------------------------------------------------------------
    def _prepare_walk(self) -> None:
        """`_walk_partial[g]`: -1 where river's walk goes on past g; where it ends (a leaf, or
        r_mass under size_limit), the score it has summed: r_mass * 2**depth over the path, g
        included."""
        partial = self._r_mass * self._depth_pow
        for nodes, parents in self._levels:
            partial[nodes] += partial[parents]
        goes_on = (self._r_mass >= self.size_limit) & ~self._leaf
        self._walk_partial = np.where(goes_on, -1, partial).tolist()

    def score_one(self, x: Sequence[float]) -> float:
        if self._first_window:
            return 0  # as river: an int
        right, feature, threshold, partial = (self._walk_right, self._walk_feature,
                                              self._walk_threshold, self._walk_partial)
        score = 0.0
        for g in self._walk_roots:
            p = partial[g]
            while p < 0:
                g = right[g] - (x[feature[g]] < threshold[g])
                p = partial[g]
            score += p
        return 1 - score / self.max_score

    # -- snapshot: plain values (monitor.detectors.snapshot); the rest derives from them ---------
    def to_plain(self) -> dict:
        return {"features": list(self.features), "n_trees": self.n_trees, "height": self.height,
                "window_size": self.window_size, "feature": self._feature.tolist(),
                "threshold": self._threshold.tolist(), "r_mass": self._r_mass.tolist(),
                "l_mass": self._l_mass.tolist(), "pending": [list(x) for x in self._pending],
                "counter": self._counter, "first_window": self._first_window}

    @classmethod
    def from_plain(cls, doc: dict) -> HalfSpaceForest:
        """The forest `to_plain` described, or SnapshotError: shapes, ranges and counts are
        checked, so the forest built scores like the one saved (and no larger one is built)."""
        features = snapshot.items(snapshot.field(doc, "features", list), str, "features")
        check = snapshot.check
        check(0 < len(features) <= MAX_FEATURES and len(set(features)) == len(features),
              f"features: 1 to {MAX_FEATURES} distinct names")
        n_trees, height, window_size = (snapshot.field(doc, k, int)
                                        for k in ("n_trees", "height", "window_size"))
        check(1 <= n_trees <= MAX_TREES and 1 <= height <= MAX_HEIGHT
              and 1 <= window_size <= MAX_WINDOW, "n_trees, height or window_size out of range")
        nodes = n_trees * (2 ** (height + 1) - 1)
        forest = cls.__new__(cls)
        forest.features = tuple(features)
        forest.n_trees, forest.height, forest.window_size = n_trees, height, window_size
        forest.size_limit = 0.1 * window_size  # river's own expressions (HalfSpaceTrees)
        forest.max_score = n_trees * window_size * (2 ** (height + 1) - 1)
        arrays = {}
        for name, kind in (("feature", int), ("threshold", float), ("r_mass", int),
                           ("l_mass", int)):
            values = snapshot.items(snapshot.field(doc, name, list), kind, name)
            check(len(values) == nodes, f"{name}: {len(values)} values, the trees have {nodes}")
            arrays[name] = values
        check(all(0 <= f < len(features) for f in arrays["feature"]), "feature: out of range")
        # A node counts at most a window's points: so every score is an exact integer sum.
        check(all(0 <= m <= window_size for m in arrays["r_mass"] + arrays["l_mass"]),
              "a mass out of range")
        forest._feature = np.array(arrays["feature"], dtype=np.intp)
        forest._threshold = np.array(arrays["threshold"], dtype=np.float64)
        forest._r_mass = np.array(arrays["r_mass"], dtype=np.int64)
        forest._l_mass = np.array(arrays["l_mass"], dtype=np.int64)
        forest._pending = []
        for x in snapshot.field(doc, "pending", list):
            check(isinstance(x, list) and len(x) == len(features),
                  "pending: a point without a value per feature")
            forest._pending.append(snapshot.items(x, float, "pending points"))
        forest._counter = snapshot.field(doc, "counter", int)
        check(len(forest._pending) <= forest._counter < window_size,
              "counter: not in [pending points, window_size)")
        forest._first_window = snapshot.field(doc, "first_window", bool)
        forest._prepare()
        return forest


# Bounds of a forest loaded from a snapshot (the detector's is 10 trees of height 8, 7 features).
MAX_FEATURES = 64
MAX_TREES = 64
MAX_HEIGHT = 12
MAX_WINDOW = 100_000


def _with_trees(model: HalfSpaceTrees, features: Sequence[str]) -> HalfSpaceTrees:
    """`model`, or, if it has not learned yet, a copy that has: river builds its trees on the
    first learn_one (from its seeded rng and the point's feature names), so let it, on a
    throwaway point. Only the copy's trees are read, not its masses."""
    if model.trees:
        return model
    built = copy.deepcopy(model)
    built.learn_one(dict.fromkeys(features, 0.0))
    return built


def _heap_order(root) -> list:
    """A complete tree's nodes, root first, then each level left to right."""
    nodes, i = [root], 0
    while i < len(nodes):
        nodes.extend(getattr(nodes[i], "children", ()))
        i += 1
    return nodes
