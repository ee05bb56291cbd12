"""Verification of signed revoke commands by their consumers (gateways, credential brokers).

A consumer acts on a command only if `Verifier.verify` accepts it. Checks, in order:
envelope (`unsigned`, `malformed`), key (`unknown_key`), signature (`bad_signature`), contents
(`malformed`), time (`expired`, `not_yet_valid`), then replay (`replayed`).

Replays and redelivery: Kafka delivers at least once, and the engine re-issues the very same
command (same `command_id`) when it re-processes an event. The consumer acts on the first
accepted copy; every later copy with that id, the same bytes or a re-signed copy, is rejected
as `replayed`. A redelivery is therefore harmless (the revocation already happened), an
attacker cannot re-use an old command for a second effect, and cannot suppress a revocation by
replaying an old one, because a new command has a different id. Only accepted ids are
remembered, so forged commands cannot fill the cache or pre-empt a real id.
"""

from __future__ import annotations

import heapq
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from prometheus_client import Counter

from ..metrics import REGISTRY
from ..signing import KEY_ID_FIELD, SIGNATURE_FIELD, canonical_bytes, key_id, signature_ok

UNSIGNED = "unsigned"
UNKNOWN_KEY = "unknown_key"
BAD_SIGNATURE = "bad_signature"
EXPIRED = "expired"
NOT_YET_VALID = "not_yet_valid"
REPLAYED = "replayed"
MALFORMED = "malformed"
REASONS = (UNSIGNED, UNKNOWN_KEY, BAD_SIGNATURE, EXPIRED, NOT_YET_VALID, REPLAYED, MALFORMED)

REJECTIONS = Counter("intentwatch_revoke_rejections_total",
                     "Revoke commands a consumer refused, by reason", ["reason"],
                     registry=REGISTRY)
ACCEPTED = Counter("intentwatch_revoke_accepted_total",
                   "Revoke commands a consumer verified and accepted", registry=REGISTRY)
for _reason in REASONS:  # export every reason at 0, so alerts on rate() work from the start
    REJECTIONS.labels(_reason)

COMMAND_TYPE = "revoke.command"
COMMAND_VERSION = 1


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    reason: str | None = None  # one of REASONS when rejected, None when accepted
    command_id: str | None = None  # as the command claims it: authentic only when accepted

    def __bool__(self) -> bool:
        return self.accepted


class Verifier:
    """Verifies revoke commands against trusted Ed25519 public keys, by key id.

    `clock` returns epoch seconds (inject a fake one in tests). `skew_seconds` tolerates clocks
    of issuer and consumer that disagree a little, for `issued_at` in the future. `replay_capacity`
    bounds memory; it should exceed the commands a consumer sees within one command lifetime.
    Thread-safe.
    """

    def __init__(self, trusted_keys: Mapping[str, Ed25519PublicKey],
                 clock: Callable[[], float] = time.time, skew_seconds: float = 30.0,
                 replay_capacity: int = 100_000):
        for kid, key in trusted_keys.items():
            if not isinstance(kid, str) or not isinstance(key, Ed25519PublicKey):
                raise TypeError(f"trusted key {kid!r}: need a str id and an Ed25519PublicKey")
        self._keys = dict(trusted_keys)
        self._clock = clock
        self._skew = float(skew_seconds)
        # Ids are kept until expiry plus the skew, so a clock that steps back a little cannot
        # make a forgotten command valid again.
        self._seen = ReplayCache(replay_capacity, retain_after_expiry=self._skew)
        self._lock = threading.Lock()

    @classmethod
    def for_keys(cls, public_keys: Iterable[Ed25519PublicKey], **kwargs) -> Verifier:
        """A verifier whose key ids are derived from the keys (`monitor.signing.key_id`)."""
        return cls({key_id(k): k for k in public_keys}, **kwargs)

    def verify(self, command: dict) -> Verdict:
        verdict = self._check(command)
        if verdict.accepted:
            ACCEPTED.inc()
        else:
            REJECTIONS.labels(verdict.reason).inc()
        return verdict

    def _check(self, command) -> Verdict:
        if not isinstance(command, dict):
            return Verdict(False, MALFORMED)
        cid = command.get("command_id") if isinstance(command.get("command_id"), str) else None
        signature = command.get(SIGNATURE_FIELD)
        if signature is None or signature == "":
            return Verdict(False, UNSIGNED, cid)
        kid = command.get(KEY_ID_FIELD)
        if not isinstance(signature, str) or not isinstance(kid, str):
            return Verdict(False, MALFORMED, cid)
        # The key is chosen by the command's own key_id, and key_id is signed: a command that
        # names key A but was signed by key B fails here as bad_signature.
        key = self._keys.get(kid)
        if key is None:
            return Verdict(False, UNKNOWN_KEY, cid)
        try:
            message = canonical_bytes(command)
        except (TypeError, orjson.JSONEncodeError):
            return Verdict(False, MALFORMED, cid)
        if not signature_ok(key, signature, message):
            return Verdict(False, BAD_SIGNATURE, cid)

        # From here on the contents are authentic; a bad shape means a broken issuer.
        issued, expires = command.get("issued_at"), command.get("expires_at")
        if (cid is None or command.get("type") != COMMAND_TYPE
                or command.get("v") != COMMAND_VERSION
                or not _is_time(issued) or not _is_time(expires) or expires < issued
                or not _is_str_list(command.get("credential_ids"))):
            return Verdict(False, MALFORMED, cid)

        now = self._clock()
        if now > expires:
            return Verdict(False, EXPIRED, cid)
        if issued > now + self._skew:
            return Verdict(False, NOT_YET_VALID, cid)
        with self._lock:  # check-and-remember must be atomic, or two threads could both accept
            if not self._seen.add(cid, expires, now):
                return Verdict(False, REPLAYED, cid)
        return Verdict(True, None, cid)


class ReplayCache:
    """Ids of accepted commands, each remembered until its expiry (plus a margin), at most
    `capacity` of them. Past expiry a command is refused as `expired` anyway, so forgetting it
    then is safe. When full, the id closest to expiry is dropped first: the least protection is
    lost, and a fresh command is never refused for lack of room (that would block revocations).
    Not thread-safe on its own; `Verifier` holds a lock around it.
    """

    def __init__(self, capacity: int, retain_after_expiry: float = 0.0):
        if capacity < 1:
            raise ValueError("replay capacity must be at least 1")
        self.capacity, self._margin = capacity, retain_after_expiry
        self._expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []  # may hold stale entries, skipped when popped

    def __len__(self) -> int:
        return len(self._expiry)

    def add(self, command_id: str, expires_at: float, now: float) -> bool:
        """Remember `command_id`; False if it is already remembered (a replay)."""
        while self._heap and self._heap[0][0] + self._margin < now:
            self._pop()
        known = self._expiry.get(command_id)
        if known is not None:
            if expires_at > known:  # a re-signed copy that lives longer: remember it as long
                self._remember(command_id, expires_at)
            return False
        while len(self._expiry) >= self.capacity:
            self._pop()
        self._remember(command_id, expires_at)
        return True

    def _remember(self, command_id: str, expires_at: float) -> None:
        self._expiry[command_id] = expires_at
        heapq.heappush(self._heap, (expires_at, command_id))

    def _pop(self) -> None:
        expires_at, command_id = heapq.heappop(self._heap)
        if self._expiry.get(command_id) == expires_at:
            del self._expiry[command_id]


def _is_time(value) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def _is_str_list(value) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)
