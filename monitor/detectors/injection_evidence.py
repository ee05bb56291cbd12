"""Injection evidence: an online text model over tool results.

Each result is cut into segments and each segment, read with its neighbours, is scored by an
online logistic regression over hashed words and bigrams (see text_model). The model knows no
phrase in advance. It learns from the engine's own, certain evidence, in the stream:
  positive: segments of a task that contain the values an action then used in a rule
            violation (an undeclared side effect, a scope breach, a foreign credential): the
            content that talked the agent into it;
  negative: the segments of a task that ended clean (no alert, no revoke).
So a new attack style is learned from the first hijacks the rules catch, and then flags the
hijacks the rules cannot see (declared tools, wrong targets).

What the model concluded is written into the task's state: the tokens seen in clean content
(a Bloom filter, see monitor.bloom) and in suspicious content with their suspicion (for
argument grounding), and the highest suspicion so far, which raises the risk of the side
effects that follow. What it read, needed only to learn once the task's label is known, waits
in a bounded buffer of the detector (part of its model state), not in the task's state: it is
most of a task's bytes and no decision reads it.
"""

from __future__ import annotations

from itertools import chain, compress
from typing import NamedTuple

import numpy as np

from .. import bloom, text
from ..lru import SizedLRU
from ..state import target_values
from . import snapshot
from .base import VIOLATION, Detector, finding, goal_tokens
from .text_model import Featurizer, HashedLogistic, Layout, layout, probability, tail

SUSPICIOUS_AT = 0.5           # a segment at or above this is treated as injected content
MAX_SEGMENTS = 24             # recent segments kept per task (for learning)
MAX_BUFFERED = 40_000         # segments of the readings the buffer holds, over all tasks
READINGS_CACHED_CHARS = 8_000_000   # text of the tool results whose reading is cached
MAX_TAINTED_TOKENS = 64
MAX_TAINTED_SEGMENTS = 8      # of one result
MIN_INSTRUCTION_TOKENS = 6    # shortest segment taken as an injected instruction
MIN_POSITIVES = 5             # do not trust the model before it has seen this many injections
MAX_POSITIVE_WEIGHT = 50.0    # cap of the class-balancing weight of a positive


class Reading(NamedTuple):
    """What the model needs of one tool result (or of some of its segments), a pure function of
    its text."""
    segments: list[str]
    layout: Layout
    hashes: np.ndarray           # hash of every token of every segment, in order (bloom)
    owner: np.ndarray            # the segment each of those tokens is in
    filters: dict                # m -> the tokens of all segments as a filter; "spread" (cache)
    masked: dict                 # (m, segments kept) -> theirs, for a few sets of segments

    def clean_bits(self, keep: np.ndarray | None = None):
        """bits_for(m) of the result's tokens (those of the `keep` segments, if given) for the
        task's filter: at most a layer's capacity of them, the last ones. Cached: the same
        result is read by many tasks, and its suspicious segments are mostly the same ones."""
        if keep is None:
            return self._all_bits
        kept = np.packbits(keep).tobytes()

        def bits_for(m: int) -> int:
            bits = self.masked.get((m, kept))
            if bits is None:
                bits = self._bits(self.hashes[keep[self.owner]], m)
                if len(self.masked) >= 4:
                    self.masked.clear()
                self.masked[m, kept] = bits
            return bits
        return bits_for

    def _all_bits(self, m: int) -> int:
        bits = self.filters.get(m)
        if bits is None:
            bits = self.filters[m] = self._bits(self.hashes, m)
        return bits

    def spread(self) -> np.ndarray:
        """bloom.spread of every token's hash (cached: a result that is suspicious once is
        read again)."""
        known = self.filters.get("spread")
        if known is None:
            known = self.filters["spread"] = bloom.spread(self.hashes)
        return known

    @staticmethod
    def _bits(hashes: np.ndarray, m: int) -> int:
        return bloom.bits_of(_latest_distinct(hashes, bloom.capacity(m)), m)


class Held:
    """What one task read recently, kept to learn from once its label is known: parts
    (segments, layout, first segment kept) of the results it read, oldest first. `cost` is the
    number of segments the parts hold, kept or not; `kept` the number kept."""

    __slots__ = ("cost", "kept", "parts")

    def __init__(self):
        self.parts: list[tuple[list[str], Layout, int]] = []
        self.cost = self.kept = 0

    def add(self, segs: list[str], lay: Layout, n: int) -> None:
        """Add a part, then keep the last n segments. A large result keeps a copy of the part
        still needed, so that the buffer does not hold on to all of it."""
        self.parts.append((segs, lay, 0))
        self.cost += lay.m
        self.kept += lay.m
        while self.kept > n:
            segs, lay, lo = self.parts[0]
            drop = min(self.kept - n, lay.m - lo)
            self.kept -= drop
            if lo + drop == lay.m:
                self.parts.pop(0)
                self.cost -= lay.m
            elif lay.m > 2 * n:
                self.parts[0] = (segs[lo + drop:], tail(lay, lo + drop), 0)
                self.cost -= lo + drop
            else:
                self.parts[0] = (segs, lay, lo + drop)


class InjectionEvidence(Detector):
    name = "injection_evidence"

    def __init__(self, catalog):
        self.features = Featurizer(catalog)
        self.model = HashedLogistic()
        self.positives = 0
        self.negatives = 0
        # task id -> what it read recently, least recently updated task first; `buffered` is
        # the sum of their costs
        self.buffer: dict[str, Held] = {}
        self.buffered = 0
        # Identical results recur (the same listing read by many tasks): cache their reading,
        # bounded by the length of the results.
        self.readings = SizedLRU(READINGS_CACHED_CHARS)

    def read(self, result: str) -> Reading:
        reading = self.readings.get(result)
        if reading is None:
            reading = self._reading(text.segments(result))
            self.readings.put(result, reading, len(result))
        return reading

    def _reading(self, segs: list[str]) -> Reading:
        toks = [text.tokens(s) for s in segs]
        return Reading(segs, layout([self.features.buckets(s) for s in segs]),
                       bloom.hashes(chain.from_iterable(toks)),
                       np.repeat(np.arange(len(segs)), [len(t) for t in toks]), {}, {})

    @property
    def cap_words(self) -> dict[str, str]:
        return self.features.cap_words

    # -- scoring -------------------------------------------------------------------------------
    def suspicion(self, context: list[str]) -> float:
        """P(injected) of a segment read with its neighbours: context = [previous, segment,
        next], "" at an edge."""
        if self.positives < MIN_POSITIVES:
            return 0.0
        return float(self.model.probabilities(layout([self.features.buckets(s)
                                                      for s in context]))[1])

    # -- hooks ---------------------------------------------------------------------------------
    def observe_result(self, action, task, spec):
        result = action.get("result")
        if not result:
            return
        reading = self.read(result)
        if not reading.segments:
            return
        prov = task.setdefault("provenance", {"clean": [], "tainted": {}, "suspicion": 0.0})
        top, suspicious = 0.0, None
        if self.positives >= MIN_POSITIVES:
            logits = self.model.logits(reading.layout)
            high = float(logits.max())
            top = round(probability(high), 4)
            if high >= 0.0:  # some segment at P >= SUSPICIOUS_AT (0.5)
                suspicious = logits >= 0.0
        prov["suspicion"] = max(prov["suspicion"], top)
        prov["clean"] = bloom.add(prov["clean"], reading.clean_bits(
            None if suspicious is None else ~suspicious))
        if suspicious is not None:
            self._taint(prov, reading, logits, suspicious, task["intent"]["goal"])
        self._remember(task["task_id"], reading)

    @staticmethod
    def _taint(prov: dict, reading: Reading, logits: np.ndarray, suspicious: np.ndarray,
               goal: str) -> None:
        """Record the tokens of suspicious segments with their suspicion, but not those already
        grounded (in the goal or in clean content read): grounding never looks them up."""
        tainted = prov["tainted"]
        # Its last MAX_TAINTED_SEGMENTS suspicious segments: a task keeps MAX_TAINTED_TOKENS
        # tokens, the latest, about that many segments' worth (a result the model finds
        # suspicious all through, e.g. before it has learned any clean content, is not
        # worth a Python step per token).
        chosen = np.flatnonzero(suspicious)[-MAX_TAINTED_SEGMENTS:].tolist()
        tokens = [text.tokens(reading.segments[i]) for i in chosen]
        last = np.zeros(reading.layout.m, dtype=bool)
        last[chosen] = True
        fresh = (~bloom.contains_many(prov["clean"], reading.spread()[last[reading.owner]])
                 ).tolist()
        trusted = goal_tokens(goal)
        k = 0
        for i, toks in zip(chosen, tokens, strict=True):
            score = round(probability(float(logits[i])), 4)
            for tok in compress(toks, fresh[k:k + len(toks)]):
                if tok not in trusted and score > tainted.get(tok, 0.0):
                    tainted[tok] = score
            k += len(toks)
        if len(tainted) > MAX_TAINTED_TOKENS:
            prov["tainted"] = dict(list(tainted.items())[-MAX_TAINTED_TOKENS:])

    def _remember(self, task_id: str, reading: Reading) -> None:
        held = self.buffer.pop(task_id, None) or Held()
        self.buffered -= held.cost
        held.add(reading.segments, reading.layout, MAX_SEGMENTS)
        self.buffer[task_id] = held   # re-inserted: now the most recently updated
        self.buffered += held.cost
        while self.buffered > MAX_BUFFERED:
            self.buffered -= self.buffer.pop(next(iter(self.buffer))).cost

    def applies_to(self, spec):
        return spec.watched

    def score_one(self, action, task, spec):
        prov = task.get("provenance")
        if not spec.watched or not prov or prov["suspicion"] < SUSPICIOUS_AT:
            return []
        # On its own this alerts; with grounding evidence it tips the decision to revoke.
        risk = round(0.6 * prov["suspicion"], 4)
        return [finding(self.name, "after_suspicious_content", risk,
                        "side effect after the task read content that looks like an injected "
                        "instruction", basis="injection_model", suspicion=prov["suspicion"])]

    def learn_one(self, action, task, spec, findings):
        if not findings:  # (most actions: nothing to learn from)
            return
        held = self.buffer.get(task["task_id"])
        if held is None or not (any(f["risk"] >= VIOLATION and f["detector"] in RULES
                                    for f in findings) or _undeclared_open_world(findings, spec)):
            return
        # Label only the content the violating call took its targets from: values the goal
        # does not mention, found in what the task read.
        goal = goal_tokens(task["intent"]["goal"])
        values = target_values(action, spec.targets) if spec.targets else [
            v for v in _string_values(action["args"]) if len(str(v)) >= 8]
        wanted = {t for v in values for t in text.tokens(text.normalise(v))
                  if len(t) >= 4 and t not in goal}
        if not wanted:
            return
        for segs, lay, lo in held.parts:
            for i in range(lo, lay.m):
                toks = text.tokens(segs[i])
                # An instruction is a sentence: a bare data line ('- general', 'to: bob@x')
                # that happens to hold the value is where a legitimate agent would find it too.
                if len(toks) >= MIN_INSTRUCTION_TOKENS and wanted & set(toks):
                    self.model.learn([(lay, [i])], True, self._positive_weight())
                    self.positives += 1

    def _positive_weight(self) -> float:
        # Balance the classes: injections are rare next to clean content, and a model that
        # sees a hundred clean lines per injected one learns to call everything clean.
        return min(MAX_POSITIVE_WEIGHT, max(1.0, self.negatives / max(self.positives, 1)))

    def task_ended(self, task, clean):
        held = self.buffer.pop(task["task_id"], None)
        if held is None:
            return
        self.buffered -= held.cost
        if clean:
            self.model.learn([(lay, range(lo, lay.m)) for _, lay, lo in held.parts], False)
            self.negatives += sum(lay.m - lo for _, lay, lo in held.parts)

    # -- persistence ---------------------------------------------------------------------------
    # The buffer is saved as segment texts; layouts are rebuilt from them. Exact but for a part
    # cut out of a large result (Held.add): its first segment then loses its previous segment
    # as context.
    def state(self) -> bytes:
        buffer = {tid: [[segs, lo] for segs, _, lo in held.parts]
                  for tid, held in self.buffer.items()}
        return snapshot.dump(self.name, SNAPSHOT_VERSION, {
            "model": self.model.to_plain(), "positives": self.positives,
            "negatives": self.negatives, "buffer": buffer})

    def load_state(self, blob: bytes) -> None:
        doc = snapshot.load(blob, self.name, SNAPSHOT_VERSION)
        model = HashedLogistic.from_plain(snapshot.field(doc, "model", dict))
        positives, negatives = (snapshot.field(doc, k, int) for k in ("positives", "negatives"))
        snapshot.check(positives >= 0 and negatives >= 0, "positives, negatives: negative")
        buffer = {tid: self._held(parts, tid)
                  for tid, parts in snapshot.field(doc, "buffer", dict).items()}
        buffered = sum(held.cost for held in buffer.values())
        snapshot.check(buffered <= MAX_BUFFERED, f"buffer: over {MAX_BUFFERED} segments")
        self.model, self.positives, self.negatives = model, positives, negatives
        self.buffer, self.buffered = buffer, buffered

    def _held(self, parts, task_id: str) -> Held:
        where = f"buffer of task {snapshot.short(task_id)}"
        snapshot.check(isinstance(parts, list), f"{where}: not a list of parts")
        held = Held()
        for part in parts:
            snapshot.check(isinstance(part, list) and len(part) == 2, f"{where}: a bad part")
            segs, lo = part
            snapshot.check(isinstance(segs, list) and isinstance(lo, int)
                           and not isinstance(lo, bool) and 0 <= lo < len(segs),
                           f"{where}: a part is not [segments, first kept]")
            snapshot.items(segs, str, f"segments of the {where}")
            snapshot.check(all(len(s) <= text.SEGMENT_CHARS for s in segs),
                           f"{where}: a segment over {text.SEGMENT_CHARS} characters")
            held.parts.append((segs, layout([self.features.buckets(s) for s in segs]), lo))
            held.cost += len(segs)
            held.kept += len(segs) - lo
        snapshot.check(held.kept <= MAX_SEGMENTS, f"{where}: over {MAX_SEGMENTS} segments kept")
        return held


SNAPSHOT_VERSION = 1

# Rule detectors whose violations are certain enough to serve as labels.
RULES = {"declared_tools", "resource_scope", "credential_binding"}


def _undeclared_open_world(findings, spec) -> bool:
    """An undeclared call that reaches outside the system (a web fetch): its target is worth
    learning from even though the call only reads."""
    return spec.open_world and any(f["code"] == "tool_not_declared" for f in findings)


def _latest_distinct(hashes: np.ndarray, n: int) -> np.ndarray:
    """The last n distinct values of hashes (all of them when there are fewer)."""
    if hashes.size <= n:
        return hashes
    unique, first = np.unique(hashes[::-1], return_index=True)  # first seen from the end
    return unique[np.argsort(first)[:n]]


def _string_values(args: dict) -> list:
    out = []
    for value in args.values():
        if isinstance(value, list):
            out.extend(v for v in value if isinstance(v, (str, int, float)))
        elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
            out.append(value)
    return out
