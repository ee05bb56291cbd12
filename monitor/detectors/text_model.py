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
The score of a context is linear in its three parts, so each segment's three partial sums are
computed once and every segment of a result is scored from them in a few vectorised steps. A
clean task's contexts are learned in one mini-batch step.
"""

from __future__ import annotations

import zlib
from functools import lru_cache
from itertools import pairwise
from typing import NamedTuple

import numpy as np

from .. import text

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
    """Segment text -> bucket indices of its grams under each prefix, laid end to end."""

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
        """int64 array of 3n bucket indices: own grams, then as 'p:', then as 'n:'."""
        own = np.fromiter(map(_bucket, self.grams(segment)), dtype=np.int64)
        return np.concatenate([own ^ mask for mask in PREFIX_MASKS])


class Layout(NamedTuple):
    """A sequence of segments' buckets laid end to end, ready for one gather-and-sum."""
    idx: np.ndarray      # every segment's 3n buckets, one after the other
    starts: np.ndarray   # offsets of each part (own, 'p:', 'n:') of the segments with grams
    rows: np.ndarray     # which segments have grams
    scale: np.ndarray    # 1/sqrt(gram count) of those segments
    m: int               # number of segments


def layout(arrays: list[np.ndarray]) -> Layout:
    rows, starts, scale = [], [], []
    offset = 0
    for i, arr in enumerate(arrays):
        n = arr.size // 3
        if n:
            rows.append(i)
            starts += (offset, offset + n, offset + 2 * n)
            scale.append(n ** -0.5)
            offset += 3 * n
    idx = np.concatenate([arrays[i] for i in rows]) if rows else np.zeros(0, dtype=np.int64)
    return Layout(idx, np.array(starts, dtype=np.int64), np.array(rows, dtype=np.int64),
                  np.array(scale), len(arrays))


class HashedLogistic:
    def __init__(self, lr: float = 0.05, intercept_lr: float = 0.01):
        self.lr = lr
        self.intercept_lr = intercept_lr
        self.w = np.zeros(BUCKETS)
        self.b = 0.0

    def part_sums(self, lay: Layout) -> np.ndarray:
        """(m, 3) array: for each segment, its weight sums as itself, as 'p:' and as 'n:',
        each already scaled by 1/sqrt(gram count) (0 for a segment without grams)."""
        sums = np.zeros((lay.m, 3))
        if lay.rows.size:
            part = np.add.reduceat(self.w[lay.idx], lay.starts).reshape(-1, 3)
            sums[lay.rows] = part * lay.scale[:, None]
        return sums

    def context_logits(self, sums: np.ndarray) -> np.ndarray:
        """Logit of each segment of a sequence read with its neighbours, from part_sums."""
        logits = self.b + sums[:, 0]
        logits[1:] += NEIGHBOUR_WEIGHT * sums[:-1, 1]   # the previous segment, as 'p:'
        logits[:-1] += NEIGHBOUR_WEIGHT * sums[1:, 2]   # the next segment, as 'n:'
        return logits

    def probabilities(self, lay: Layout) -> np.ndarray:
        """P(injected) of every segment of a sequence (a tool result), each with neighbours."""
        return _sigmoid(self.context_logits(self.part_sums(lay)))

    def learn(self, contexts: list[tuple[np.ndarray, np.ndarray, np.ndarray]], label: bool,
              weight: float = 1.0) -> None:
        """One SGD step on a mini-batch of contexts (previous, segment, next buckets), all with
        the same label. A batch of one is river's learn_one."""
        parts, counts, values, owners = [], [], [], []
        for k, (prev, seg, nxt) in enumerate(contexts):
            for arr, part, scale in ((seg, 0, 1.0), (prev, 1, NEIGHBOUR_WEIGHT),
                                     (nxt, 2, NEIGHBOUR_WEIGHT)):
                n = arr.size // 3
                if n:
                    parts.append(arr[part * n:(part + 1) * n])
                    counts.append(n)
                    values.append(scale * n ** -0.5)
                    owners.append(k)
        if not parts:
            return
        idx = np.concatenate(parts)
        val = np.repeat(values, counts)
        owner = np.repeat(owners, counts)
        raw = self.b + np.bincount(owner, self.w[idx] * val, minlength=len(contexts))
        gradient = (_sigmoid(raw) - float(label)) * weight   # d(log loss)/d(raw score)
        np.add.at(self.w, idx, -self.lr * gradient[owner] * val)
        self.b -= self.intercept_lr * float(gradient.sum())

    # -- persistence: the non-zero weights only, as float64 (scores must not move) -----------
    def to_bytes(self) -> bytes:
        nz = np.flatnonzero(self.w).astype(np.int32)
        head = np.array([self.b, nz.size], dtype=np.float64).tobytes()
        return head + nz.tobytes() + self.w[nz].tobytes()

    @classmethod
    def from_bytes(cls, blob: bytes, **kwargs) -> HashedLogistic:
        model = cls(**kwargs)
        b, n = np.frombuffer(blob[:16], dtype=np.float64)
        n = int(n)
        nz = np.frombuffer(blob[16:16 + 4 * n], dtype=np.int32)
        model.w[nz] = np.frombuffer(blob[16 + 4 * n:16 + 12 * n], dtype=np.float64)
        model.b = float(b)
        return model


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -500, 500)))
