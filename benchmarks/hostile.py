"""Hostile records: a good event turned into a record the worker must dead-letter.

One generator per kind of attack, each a function of a random source and a good event, so the
property tests (tests/test_hostile_properties.py, hypothesis supplies the random source) and
the soak (benchmarks/soak.py, a seeded random.Random) draw the same records. Every kind names
the dead-letter reason the worker must give it (`REASONS`): the soak checks each hostile record
reached the dead letters with that reason.

The kinds are about the contract (monitor.contracts.SPECS), not about any data set: wrong
types are derived from each field's kind in SPECS, missing fields from its required ones.
"""

from __future__ import annotations

import random

import orjson

from monitor.contracts import BOOL, DEFAULT_MAX_BYTES, INT, NUM, OBJ, SCOPES, SPECS, STR, STRS

# Values of every kind but the one a field wants (never None: null counts as absent).
WRONG_VALUES = {
    STR: (1, 2.5, True, [], {}, ["x"]),
    NUM: ("1", True, [], {}, [1.0]),
    INT: (1.5, "1", True, [], {}, 1e300),
    BOOL: (1, "true", [], {}),
    OBJ: ([], "x", 1, [["a", 1]]),
    STRS: ("x", [1], [None], {}, [["x"]]),
    SCOPES: ([], "x", {"a": "x"}, {"a": [1]}),
}
DEEP_LEVELS = 10_000          # orjson refuses more than 1024
OVERSIZE_BYTES = 600 * 1024   # over the worker's 512 KiB, under Kafka's default 1 MB


def _dumps(event: dict) -> bytes:
    return orjson.dumps(event)


def _string_fields(event: dict) -> list[str]:
    return sorted(k for k, v in event.items() if isinstance(v, str) and k not in ("v", "type"))


def not_json(rng: random.Random, good: dict) -> bytes:
    raw = _dumps(good)
    choice = rng.randrange(4)
    if choice == 0:
        return raw[:rng.randrange(1, len(raw))]                   # truncated
    if choice == 1:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64))) + b"\x00{"
    if choice == 2:
        return raw.replace(b":", b"=", 1)                          # not JSON syntax
    return b"\xef\xbb\xbf" + raw                                   # a byte order mark


def not_object(rng: random.Random, good: dict) -> bytes:
    return rng.choice((b"[]", b"1", b"\"task\"", b"null", b"true", _dumps([good])))


def deep_nesting(rng: random.Random, good: dict) -> bytes:
    levels = rng.randrange(1025, DEEP_LEVELS + 1)
    if rng.random() < 0.5:
        return b"[" * levels + b"]" * levels
    field = rng.choice(sorted(good))
    body = _dumps({**good, field: None})
    nested = b"{\"a\":" * levels + b"1" + b"}" * levels
    return body.replace(b"\"" + field.encode() + b"\":null", b"\"" + field.encode() + b"\":"
                        + nested, 1)


def oversize(rng: random.Random, good: dict) -> bytes:
    field = rng.choice(_string_fields(good) or ["padding"])
    return _dumps({**good, field: "x" * (OVERSIZE_BYTES + rng.randrange(1024))})


def invalid_utf8(rng: random.Random, good: dict) -> bytes:
    field = rng.choice(_string_fields(good))
    marker = "\u2603MARK\u2603"
    raw = _dumps({**good, field: marker})
    bad = rng.choice((b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"))
    return raw.replace(marker.encode(), bad, 1)


def lone_surrogate(rng: random.Random, good: dict) -> bytes:
    field = rng.choice(_string_fields(good))
    marker = "SURROGATE-MARK"
    raw = _dumps({**good, field: marker})
    return raw.replace(marker.encode(), rng.choice((b"\\ud800", b"a\\udfff", b"\\udbff\\u0041")))


def non_finite(rng: random.Random, good: dict) -> bytes:
    raw = _dumps({**good, "event_time": 12345.678901})
    return raw.replace(b"12345.678901", rng.choice((b"NaN", b"Infinity", b"-Infinity", b"1e999")))


def huge_int(rng: random.Random, good: dict) -> bytes:
    # orjson reads an integer beyond 64 bits as a float: `v` is then not the version 1.
    return _dumps({**good, "v": 0}).replace(b"\"v\":0", b"\"v\":" + b"9" * rng.randrange(20, 300))


def unknown_version(rng: random.Random, good: dict) -> bytes:
    return _dumps({**good, "v": rng.choice((0, 2, -1, "1", 1.5, [1], {}, False))})


def missing_version(rng: random.Random, good: dict) -> bytes:
    return _dumps({k: v for k, v in good.items() if k != "v"})


def unknown_type(rng: random.Random, good: dict) -> bytes:
    return _dumps({**good, "type": rng.choice(("task.intentx", "", "TASK.END", 7, None,
                                               ["agent.action"], "decision"))})


def missing_field(rng: random.Random, good: dict) -> bytes:
    spec = SPECS[good["type"]]
    field = rng.choice([n for n, (_, required, _) in spec.items() if required])
    event = {k: v for k, v in good.items() if k != field}
    if rng.random() < 0.5:
        event[field] = None
    return _dumps(event)


def wrong_type(rng: random.Random, good: dict) -> bytes:
    spec = SPECS[good["type"]]
    field = rng.choice(sorted(spec))
    return _dumps({**good, field: rng.choice(WRONG_VALUES[spec[field][0]])})


def empty(rng: random.Random, good: dict) -> None:
    return None  # a record without a value (a tombstone on the input topic)


# kind -> (generator, dead-letter reason the worker must give it)
KINDS = {
    "not_json": (not_json, "not_json"),
    "not_object": (not_object, "not_object"),
    "deep_nesting": (deep_nesting, "not_json"),
    "oversize": (oversize, "oversize"),
    "invalid_utf8": (invalid_utf8, "not_json"),
    "lone_surrogate": (lone_surrogate, "not_json"),
    "non_finite": (non_finite, "not_json"),
    "huge_int": (huge_int, "unsupported_version"),
    "unknown_version": (unknown_version, "unsupported_version"),
    "missing_version": (missing_version, "unsupported_version"),
    "unknown_type": (unknown_type, "unknown_type"),
    "missing_field": (missing_field, "missing_field"),
    "wrong_type": (wrong_type, "wrong_type"),
    "empty": (empty, "empty"),
}
REASONS = {kind: reason for kind, (_, reason) in KINDS.items()}
# Not a kind above: a good value under a key that is not its task id ("key_mismatch").
KEY_MISMATCH = "key_mismatch"
BAD_KEYS = (b"not-the-task", b"\xff\xfe\xfd", b"", b"\x00")

assert OVERSIZE_BYTES > DEFAULT_MAX_BYTES  # the oversize kind must be over the limit


def hostile_record(rng: random.Random, good: dict, kind: str | None = None
                   ) -> tuple[str, bytes | None, bytes | None, str]:
    """(kind, value, key, expected reason) of one hostile record made from `good`. The key
    is the task id, none (unless there is no value either), or bytes that are not UTF-8: a broken value's reason does not depend
    on it. kind None: a random one, or (1 in 15) a good value under a wrong key."""
    task_key = good["task_id"].encode()
    if kind is None and rng.randrange(len(KINDS) + 1) == 0:
        kind = KEY_MISMATCH
    if kind == KEY_MISMATCH:
        return kind, _dumps(good), rng.choice(BAD_KEYS), KEY_MISMATCH
    kind = kind or rng.choice(sorted(KINDS))
    make, reason = KINDS[kind]
    value = make(rng, good)
    key = rng.choice((task_key, task_key, b"\xff\xfe") + ((None,) if value is not None else ()))
    return kind, value, key, reason  # (Kafka needs a key or a value)
