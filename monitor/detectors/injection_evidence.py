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

What the model concluded is written into the task's state: the tokens seen in clean and in
suspicious content (for argument grounding), and the highest suspicion so far, which raises the
risk of the side effects that follow. The segments themselves, needed only to learn once the
task's label is known, wait in a bounded buffer of the detector (part of its model state), not
in the task's state: they are most of a task's bytes and no decision reads them.
"""

from __future__ import annotations

import pickle
from functools import lru_cache
from itertools import chain
from typing import NamedTuple

from .. import text
from ..state import target_values
from .base import VIOLATION, Detector, finding
from .text_model import Featurizer, HashedLogistic, Layout, layout

SUSPICIOUS_AT = 0.5           # a segment at or above this is treated as injected content
MAX_SEGMENTS = 24             # recent segments kept per task (for learning)
MAX_BUFFERED = 20_000         # segments kept for learning, over all tasks (oldest task dropped)
MAX_CLEAN_TOKENS = 384
MAX_TAINTED_TOKENS = 128
MIN_INSTRUCTION_TOKENS = 6    # shortest segment taken as an injected instruction
MIN_POSITIVES = 5             # do not trust the model before it has seen this many injections
MAX_POSITIVE_WEIGHT = 50.0    # cap of the class-balancing weight of a positive

Context = tuple[str, str, str]   # previous segment, segment, next segment ("" at the edges)


class Reading(NamedTuple):
    """What the model needs of one tool result, a pure function of its text."""
    segments: list[str]
    contexts: list[Context]
    layout: Layout
    tokens: tuple[str, ...]      # every segment's tokens, once each, in order


class InjectionEvidence(Detector):
    name = "injection_evidence"

    def __init__(self, catalog):
        self.features = Featurizer(catalog)
        self.model = HashedLogistic()
        self.positives = 0
        self.negatives = 0
        # task id -> its recent contexts, least recently updated task first
        self.buffer: dict[str, list[Context]] = {}
        self.buffered = 0
        # Identical results recur (the same listing read by many tasks): cache their reading.
        self.read = lru_cache(maxsize=2048)(self._read)

    def _read(self, result: str) -> Reading:
        segs = text.segments(result)
        padded = ["", *segs, ""]
        return Reading(segs, list(zip(padded, segs, padded[2:], strict=False)),
                       layout([self.features.buckets(s) for s in segs]),
                       tuple(dict.fromkeys(chain.from_iterable(map(text.tokens, segs)))))

    @property
    def cap_words(self) -> dict[str, str]:
        return self.features.cap_words

    # -- scoring -------------------------------------------------------------------------------
    def suspicion(self, context: list[str] | Context) -> float:
        """P(injected) of one segment read with its neighbours."""
        if self.positives < MIN_POSITIVES:
            return 0.0
        lay = layout([self.features.buckets(s) for s in context])
        return float(self.model.probabilities(lay)[1])

    def _arrays(self, ctx: Context):
        return tuple(self.features.buckets(s) for s in ctx)

    # -- hooks ---------------------------------------------------------------------------------
    def observe_result(self, action, task, spec):
        result = action.get("result")
        if not result:
            return
        reading = self.read(result)
        if not reading.segments:
            return
        prov = task.setdefault("provenance", {"clean": [], "tainted": {}, "suspicion": 0.0})
        top, clean_tokens = 0.0, reading.tokens
        if self.positives >= MIN_POSITIVES:
            scores = self.model.probabilities(reading.layout).round(4)
            top = float(scores.max())
            if top >= SUSPICIOUS_AT:
                clean_tokens = self._taint(prov, reading.segments, scores.tolist())
        prov["suspicion"] = max(prov["suspicion"], top)
        # dicts keep insertion order: the oldest tokens are the ones dropped when full
        seen = dict.fromkeys(prov["clean"])
        seen.update(dict.fromkeys(clean_tokens))
        prov["clean"] = list(seen)[-MAX_CLEAN_TOKENS:]
        self._remember(task["task_id"], reading.contexts)

    @staticmethod
    def _taint(prov: dict, segs: list[str], scores: list[float]) -> list[str]:
        """Record the tokens of suspicious segments; returns the tokens of the clean ones."""
        tainted, clean = prov["tainted"], []
        for seg, score in zip(segs, scores, strict=True):
            if score >= SUSPICIOUS_AT:
                for tok in text.tokens(seg):
                    tainted[tok] = max(score, tainted.get(tok, 0.0))
            else:
                clean.extend(text.tokens(seg))
        if len(tainted) > MAX_TAINTED_TOKENS:
            prov["tainted"] = dict(list(tainted.items())[-MAX_TAINTED_TOKENS:])
        return clean

    def _remember(self, task_id: str, contexts: list[Context]) -> None:
        held = self.buffer.pop(task_id, [])
        self.buffered -= len(held)
        held = (held + contexts)[-MAX_SEGMENTS:]
        self.buffer[task_id] = held   # re-inserted: now the most recently updated
        self.buffered += len(held)
        while self.buffered > MAX_BUFFERED:
            oldest = next(iter(self.buffer))
            self.buffered -= len(self.buffer.pop(oldest))

    def score_one(self, action, task, spec):
        prov = task.get("provenance")
        if not (spec.side_effecting or spec.open_world) or not prov or \
                prov["suspicion"] < SUSPICIOUS_AT:
            return []
        # On its own this alerts; with grounding evidence it tips the decision to revoke.
        risk = round(0.6 * prov["suspicion"], 4)
        return [finding(self.name, "after_suspicious_content", risk,
                        "side effect after the task read content that looks like an injected "
                        "instruction", basis="injection_model", suspicion=prov["suspicion"])]

    def learn_one(self, action, task, spec, findings):
        contexts = self.buffer.get(task["task_id"])
        if not contexts or not (any(f["risk"] >= VIOLATION and f["detector"] in RULES
                                    for f in findings) or _undeclared_open_world(findings, spec)):
            return
        # Label only the content the violating call took its targets from: values the goal
        # does not mention, found in what the task read.
        goal = set(text.tokens(task["intent"]["goal"]))
        values = target_values(action, spec.targets) if spec.targets else [
            v for v in _string_values(action["args"]) if len(str(v)) >= 8]
        wanted = {t for v in values for t in text.tokens(text.normalise(v))
                  if len(t) >= 4 and t not in goal}
        if not wanted:
            return
        for ctx in contexts:
            toks = text.tokens(ctx[1])
            # An instruction is a sentence: a bare data line ('- general', 'to: bob@x') that
            # happens to hold the value is where a legitimate agent would find it too.
            if len(toks) >= MIN_INSTRUCTION_TOKENS and wanted & set(toks):
                self.model.learn([self._arrays(ctx)], True, self._positive_weight())
                self.positives += 1

    def _positive_weight(self) -> float:
        # Balance the classes: injections are rare next to clean content, and a model that
        # sees a hundred clean lines per injected one learns to call everything clean.
        return min(MAX_POSITIVE_WEIGHT, max(1.0, self.negatives / max(self.positives, 1)))

    def task_ended(self, task, clean):
        contexts = self.buffer.pop(task["task_id"], [])
        self.buffered -= len(contexts)
        if clean and contexts:
            self.model.learn([self._arrays(c) for c in contexts], False)
            self.negatives += len(contexts)

    # -- persistence ---------------------------------------------------------------------------
    def state(self) -> bytes:
        return pickle.dumps((self.model.to_bytes(), self.positives, self.negatives,
                             self.buffer))

    def load_state(self, blob: bytes) -> None:
        weights, self.positives, self.negatives, self.buffer = pickle.loads(blob)
        self.model = HashedLogistic.from_bytes(weights)
        self.buffered = sum(len(c) for c in self.buffer.values())


# Rule detectors whose violations are certain enough to serve as labels.
RULES = {"declared_tools", "resource_scope", "credential_binding"}


def _undeclared_open_world(findings, spec) -> bool:
    """An undeclared call that reaches outside the system (a web fetch): its target is worth
    learning from even though the call only reads."""
    return spec.open_world and any(f["code"] == "tool_not_declared" for f in findings)


def _string_values(args: dict) -> list:
    out = []
    for value in args.values():
        if isinstance(value, list):
            out.extend(v for v in value if isinstance(v, (str, int, float)))
        elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
            out.append(value)
    return out
