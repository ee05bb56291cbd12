"""Injection evidence: an online text model over tool results.

Each result is cut into segments and each segment scored by a river logistic regression over
hashed words and bigrams, where values are replaced by their shape (<email>, <url>, <code>,
<number>) and words that name a catalog capability add a `cap:<class>` feature. The model knows
no phrase in advance. It learns from the engine's own, certain evidence, in the stream:
  positive: segments of a task that contain the values an action then used in a rule
            violation (an undeclared side effect, a scope breach, a foreign credential): the
            content that talked the agent into it;
  negative: the segments of a task that ended clean (no alert, no revoke).
So a new attack style is learned from the first hijacks the rules catch, and then flags the
hijacks the rules cannot see (declared tools, wrong targets).

What the model concluded is written into the task's state: per segment suspicion, the tokens
seen in clean and in suspicious content (for argument grounding), and the highest suspicion so
far, which raises the risk of the side effects that follow.
"""

from __future__ import annotations

import pickle
import zlib
from functools import lru_cache
from itertools import pairwise

from river import linear_model, optim

from .. import text
from ..state import target_values
from .base import VIOLATION, Detector, finding

BUCKETS = 1 << 18
SUSPICIOUS_AT = 0.5           # a segment at or above this is treated as injected content
MAX_SEGMENTS = 24            # recent segments kept per task (for learning)
MAX_CLEAN_TOKENS = 768
MAX_TAINTED_TOKENS = 256
MIN_INSTRUCTION_TOKENS = 6   # shortest segment taken as an injected instruction
MIN_POSITIVES = 5            # do not trust the model before it has seen this many injections
MAX_POSITIVE_WEIGHT = 50.0   # cap of the class-balancing weight of a positive


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


class InjectionEvidence(Detector):
    name = "injection_evidence"

    def __init__(self, catalog):
        self.cap_words = capability_words(catalog)
        # Each segment is featurised as itself and as both neighbours' context, and the same
        # segments recur across tasks: cache the hashed grams (a pure function of the text).
        self._buckets = lru_cache(maxsize=1 << 16)(self._uncached_buckets)
        self.model = linear_model.LogisticRegression(optimizer=optim.SGD(0.05), l2=0.0)
        self.positives = 0
        self.negatives = 0

    # -- features and scoring ----------------------------------------------------------------
    def _grams(self, segment: str) -> list[str]:
        words = []
        for tok in text.tokens(segment):
            kind = text.shape(tok)
            words.append(f"<{kind}>" if kind else tok)
        grams = words + [a + " " + b for a, b in pairwise(words)]
        return grams + ["cap:" + self.cap_words[w] for w in words if w in self.cap_words]

    def _uncached_buckets(self, segment: str, prefix: str) -> tuple[int, ...]:
        return tuple(_bucket(prefix + g) for g in self._grams(segment))

    def features(self, context: list[str]) -> dict[int, float]:
        """Features of [previous, segment, next]: the segment's own grams, and its neighbours'
        grams under their own names (an injected line rarely says who is talking; the line
        before it often does)."""
        feats: dict[int, float] = {}
        for prefix, seg, scale in (("", context[1], 1.0), ("p:", context[0], 0.5),
                                   ("n:", context[2], 0.5)):
            buckets = self._buckets(seg, prefix) if seg else ()
            if not buckets:
                continue
            weight = scale / len(buckets) ** 0.5
            for b in buckets:
                feats[b] = feats.get(b, 0.0) + weight
        return feats

    def suspicion(self, context: list[str]) -> float:
        if self.positives < MIN_POSITIVES:
            return 0.0
        return self.model.predict_proba_one(self.features(context)).get(True, 0.0)

    # -- hooks ---------------------------------------------------------------------------------
    def observe_result(self, action, task, spec):
        result = action.get("result")
        if not result:
            return
        prov = task.setdefault("provenance", {"clean": [], "tainted": {}, "suspicion": 0.0,
                                              "segments": []})
        # dicts keep insertion order, so the oldest tokens are the ones dropped when full
        clean, tainted = dict.fromkeys(prov["clean"]), prov["tainted"]
        segs = text.segments(result)
        for i, seg in enumerate(segs):
            # An injected instruction is a block of text: read each segment with its neighbours.
            ctx = [segs[i - 1] if i else "", seg, segs[i + 1] if i + 1 < len(segs) else ""]
            score = round(self.suspicion(ctx), 4)
            prov["suspicion"] = max(prov["suspicion"], score)
            if score >= SUSPICIOUS_AT:
                for tok in text.tokens(seg):
                    tainted[tok] = max(score, tainted.get(tok, 0.0))
            else:
                clean.update(dict.fromkeys(text.tokens(seg)))
            prov["segments"].append(ctx)
        del prov["segments"][:-MAX_SEGMENTS]
        prov["clean"] = list(clean)[-MAX_CLEAN_TOKENS:]
        if len(tainted) > MAX_TAINTED_TOKENS:
            prov["tainted"] = dict(list(tainted.items())[-MAX_TAINTED_TOKENS:])

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
        prov = task.get("provenance")
        if not prov or not (any(f["risk"] >= VIOLATION and f["detector"] in RULES
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
        for ctx in prov["segments"]:
            toks = text.tokens(ctx[1])
            # An instruction is a sentence: a bare data line ('- general', 'to: bob@x') that
            # happens to hold the value is where a legitimate agent would find it too.
            if len(toks) >= MIN_INSTRUCTION_TOKENS and wanted & set(toks):
                self.model.learn_one(self.features(ctx), True, w=self._positive_weight())
                self.positives += 1

    def _positive_weight(self) -> float:
        # Balance the classes: injections are rare next to clean content, and a model that
        # sees a hundred clean lines per injected one learns to call everything clean.
        return min(MAX_POSITIVE_WEIGHT, max(1.0, self.negatives / max(self.positives, 1)))

    def task_ended(self, task, clean):
        prov = task.get("provenance")
        if not clean or not prov:
            return
        for ctx in prov["segments"]:
            self.model.learn_one(self.features(ctx), False)
            self.negatives += 1

    # -- persistence ---------------------------------------------------------------------------
    def state(self) -> bytes:
        return pickle.dumps((self.model, self.positives, self.negatives))

    def load_state(self, blob: bytes) -> None:
        self.model, self.positives, self.negatives = pickle.loads(blob)


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
