"""The injection detector's text model: hashed features of a segment read with its neighbours,
and an online logistic regression over them that scores a whole tool result in one pass.

Features of a segment in its context [previous, segment, next] are the hashed words and
bigrams of each of the three, each part in its own bucket space (see PREFIX_MASKS), where
values are replaced by their shape (<email>, <url>, <code>, <number>) and words that name a
catalog capability add a `cap:<class>` feature. Each part is weighted 1/sqrt(its gram count),
the neighbours half.

The model is river's LogisticRegression (SGD on log loss, constant learning rate, an intercept
with its own rate) with the weights in a dense numpy vector instead of a dict, because river
scores one dict of features at a time and that was most of the engine's cost (BENCHMARKS.md).
A result's segments are laid out once (`Layout`: every gram under each prefix, with the segment
whose score it adds to and its weight), so scoring all of them is one gather and one bincount,
and learning any of them one more scatter. A clean task's contexts are learned in one
mini-batch step.
"""

from __future__ import annotations

import math
import zlib
from functools import lru_cache
from itertools import pairwise
from typing import NamedTuple

import numpy as np

from .. import text
from . import snapshot

BUCKETS = 1 << 18
# The segment itself, as the previous line ('p:') and as the next line ('n:'): a gram's bucket
# under a prefix is its own bucket xor a fixed mask, so a gram is hashed once, not three times.
PREFIX_MASKS = (0, 0x2A5F1, 0x1C3B7)
NEIGHBOUR_WEIGHT = 0.5


def _bucket(feature: str) -> int:
    # crc32, not hash(): Python salts str hashes per process, and scores must be reproducible.
    return zlib.crc32(feature.encode()) % BUCKETS


def capability_words(catalog) -> dict[str, str]:
    """Word -> capability class, from the catalog's own tool names ('send_money' -> send,
    money). Derived from the deployment's catalog, not from any data set."""
    words: dict[str, str] = {}
    for spec in catalog.tools.values():
        for cap in sorted(spec.capabilities - {"read"}):
            for word in spec.name.lower().split("_"):
                if len(word) > 2:
                    words.setdefault(word, cap)
    return words


class Featurizer:
    """Segment text -> bucket indices of its grams."""

    def __init__(self, catalog):
        self.cap_words = capability_words(catalog)
        # The same segments recur across tasks (listings, the same records read by many
        # tasks): cache their buckets, a pure function of the text.
        self.buckets = lru_cache(maxsize=1 << 16)(self._buckets)

    def grams(self, segment: str) -> list[str]:
        words = []
        for tok in text.tokens(segment):
            kind = text.shape(tok)
            words.append(f"<{kind}>" if kind else tok)
        grams = words + [a + " " + b for a, b in pairwise(words)]
        return grams + ["cap:" + self.cap_words[w] for w in words if w in self.cap_words]

    def _buckets(self, segment: str) -> np.ndarray:
        """intp array of the buckets of the segment's own grams."""
        return np.fromiter(map(_bucket, self.grams(segment)), dtype=np.intp)


class Layout(NamedTuple):
    """Every gram of a sequence of segments under each prefix, with the segment whose score it
    adds to: a segment's logit is b + sum(w[idx] * val) over the entries that target it."""
    idx: np.ndarray      # bucket of the entry (a gram under a prefix)
    target: np.ndarray   # segment scored: i for i's own grams, i+1 for i as 'p:', i-1 as 'n:'
    val: np.ndarray      # 1/sqrt(gram count of the gram's segment), half for the neighbours
    m: int               # number of segments


def layout(arrays: list[np.ndarray]) -> Layout:
    """The layout of segments given their own buckets (Featurizer.buckets), in order."""
    m = len(arrays)
    grams = np.fromiter((a.size for a in arrays), dtype=np.int64, count=m)
    own = np.concatenate(arrays) if m else np.zeros(0, dtype=np.intp)
    seg = np.repeat(np.arange(m, dtype=np.intp), grams)
    with np.errstate(divide="ignore"):  # (a segment without grams has no entry to weigh)
        scale = (1.0 / np.sqrt(grams))[seg]
    before, after = seg < m - 1, seg > 0   # has a next segment / a previous one
    return Layout(
        np.concatenate([own, own[before] ^ PREFIX_MASKS[1], own[after] ^ PREFIX_MASKS[2]]),
        np.concatenate([seg, seg[before] + 1, seg[after] - 1]),
        np.concatenate([scale, NEIGHBOUR_WEIGHT * scale[before],
                        NEIGHBOUR_WEIGHT * scale[after]]),
        m)


def tail(lay: Layout, lo: int) -> Layout:
    """The layout of segments lo.. (the first still read with its previous segment)."""
    keep = lay.target >= lo
    return Layout(lay.idx[keep], lay.target[keep] - lo, lay.val[keep], lay.m - lo)


class HashedLogistic:
    def __init__(self, lr: float = 0.05, intercept_lr: float = 0.01):
        self.lr = lr
        self.intercept_lr = intercept_lr
        self.w = np.zeros(BUCKETS)
        self.b = 0.0

    def logits(self, lay: Layout) -> np.ndarray:
        """Logit of each segment of a sequence, read with its neighbours."""
        return self.b + np.bincount(lay.target, self.w[lay.idx] * lay.val, minlength=lay.m)

    def probabilities(self, lay: Layout) -> np.ndarray:
        """P(injected) of every segment of a sequence (a tool result), each with neighbours."""
        return sigmoid(self.logits(lay))

    def learn(self, batch: list[tuple[Layout, list[int] | range]], label: bool,
              weight: float = 1.0) -> None:
        """One SGD step on a mini-batch of contexts, all with the same label: for each layout,
        the segments given (each read with its neighbours). Every gradient is taken at the
        weights before the step. A batch of one is river's learn_one."""
        steps, gradients = [], []
        for lay, segments in batch:
            idx, target, val = lay.idx, lay.target, lay.val
            chosen = None
            if len(segments) < lay.m:  # (else all of them: the common case, no masking)
                chosen = np.zeros(lay.m, dtype=bool)
                chosen[segments] = True
                entries = chosen[target]
                idx, target, val = idx[entries], target[entries], val[entries]
            raw = self.b + np.bincount(target, self.w[idx] * val, minlength=lay.m)
            gradient = (sigmoid(raw) - float(label)) * weight  # d(log loss)/d(raw score)
            if chosen is not None:
                gradient *= chosen
            steps.append((idx, gradient[target] * val))
            gradients.append(gradient.sum())
        for idx, step in steps:
            np.subtract.at(self.w, idx, self.lr * step)
        self.b -= self.intercept_lr * float(sum(gradients))

    # -- persistence: the non-zero weights only, as float64 (scores must not move) -----------
    def to_plain(self) -> dict:
        nz = np.flatnonzero(self.w)
        return {"buckets": BUCKETS, "bias": self.b, "index": snapshot.pack(nz.astype("<i4")),
                "weight": snapshot.pack(self.w[nz])}

    @classmethod
    def from_plain(cls, doc: dict, **kwargs) -> HashedLogistic:
        """The model `to_plain` described, or SnapshotError. Weights are bounded (MAX_WEIGHT)
        so that no logit can overflow."""
        check = snapshot.check
        check(snapshot.field(doc, "buckets", int) == BUCKETS,
              f"buckets: not {BUCKETS} (weights of another feature space)")
        bias = snapshot.field(doc, "bias", float)
        index = snapshot.unpack(doc, "index", "<i4", BUCKETS)
        weight = snapshot.unpack(doc, "weight", "<f8", BUCKETS)
        check(index.size == weight.size, "index and weight: not as many of each")
        check(bool(np.all(np.diff(index) > 0)) and (index.size == 0 or 0 <= index[0]
                                                      and index[-1] < BUCKETS),
              f"index: not increasing buckets in [0, {BUCKETS})")
        check(abs(bias) <= MAX_WEIGHT and bool(np.all(np.abs(weight) <= MAX_WEIGHT)),
              f"a weight beyond +-{MAX_WEIGHT:g}")
        model = cls(**kwargs)
        model.w[index] = weight
        model.b = bias
        return model


MAX_WEIGHT = 1e6  # far beyond any learned weight (steps of at most lr * 50 on a saturating loss)


def probability(logit: float) -> float:
    """The sigmoid of one logit (math, not numpy: a numpy scalar costs a microsecond)."""
    return 1.0 / (1.0 + math.exp(-max(logit, -500.0)))


def sigmoid(x):
    # exp(-x) would overflow below -709; np.maximum is a plain ufunc, np.clip is much slower
    return 1.0 / (1.0 + np.exp(-np.maximum(x, -500.0)))
