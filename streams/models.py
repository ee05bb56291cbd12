"""Learned model state on Kafka: a compacted topic holds the latest snapshot of each learned
detector, so a restarted worker resumes with what it had learned.

Snapshots are taken every INTENTWATCH_MODEL_SNAPSHOT_SECONDS and when the worker stops; a worker
killed outright loses at most what it learned since the last one, and relearns part of it from
the events it re-reads. One worker per app id is assumed: several would overwrite each other's
snapshots (each keeps its own models).

A record: key, the detector's name; value, zlib of its snapshot (plain JSON, see
monitor.detectors.snapshot); with a signing key, the headers x-intentwatch-key-id and
x-intentwatch-signature: Ed25519 by that key over monitor.signing.snapshot_message(name,
value). Headers rather than a JSON envelope: the value stays the compressed snapshot (base64
in an envelope would add a third to a record that must fit max.message.bytes), and the
signature is checked on the bytes as received, before anything is decompressed or parsed.

At start every record is read, oldest first, and the latest good one per detector is kept. A
record without a key or a value, or (the worker having a key) unsigned or not signed by that
key, is skipped: the detector's previous record stands if the topic still holds one. Then
`restore` decompresses each detector's record and loads it; a record that is not zlib, too
large, or that the detector refuses leaves that detector fresh. Each refusal is a line on
stderr and one in intentwatch_model_snapshots_rejected_total{detector}: no record stops the
worker from starting (a topic that cannot be read to its end within the timeout still does).
"""

from __future__ import annotations

import sys
import time
import zlib
from typing import NamedTuple

from aiokafka import AIOKafkaConsumer, TopicPartition
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from monitor import metrics, signing
from monitor.config import Settings
from monitor.detectors.snapshot import MAX_BYTES, SnapshotError, short
from monitor.engine import Engine

from .kafka_security import kafka_client_options

KEY_ID_HEADER = "x-intentwatch-key-id"
SIGNATURE_HEADER = "x-intentwatch-signature"
MAX_NAMES = 16  # distinct record keys kept (3 detectors learn): unsigned floods stay bounded
UNKNOWN = "unknown"  # the metric's label for a record of no learned detector


class Snapshot(NamedTuple):
    records: dict[str, bytes]        # detector name -> its latest good record's value
    skipped: list[tuple[str, str]]   # (name, reason) of every record skipped


def topic_name(settings: Settings) -> str:
    return f"{settings.app_id}-models"


def encode(name: str, blob: bytes, key: Ed25519PrivateKey | None
           ) -> tuple[bytes, list[tuple[str, bytes]]]:
    """(value, headers) of the record of detector `name`'s snapshot `blob`."""
    value = zlib.compress(blob, 6)
    if key is None:
        return value, []
    return value, [(KEY_ID_HEADER, signing.key_id(key).encode()),
                   (SIGNATURE_HEADER, signing.sign_snapshot(name, value, key).encode())]


def check_record(name: str, value: bytes | None, headers, key: Ed25519PrivateKey | None) -> None:
    """SnapshotError if the record is to be skipped (see the module doc)."""
    if value is None:
        raise SnapshotError("no value (a tombstone)")
    if key is None:
        return
    found = dict(headers or ())
    signature = found.get(SIGNATURE_HEADER)
    if signature is None:
        raise SnapshotError("unsigned, and this worker has a signing key")
    if not signing.signature_ok(key.public_key(), signature.decode("ascii", "replace"),
                                signing.snapshot_message(name, value)):
        claimed = found.get(KEY_ID_HEADER, b"").decode("utf-8", "replace")
        raise SnapshotError(f"bad signature (key id {short(claimed)}, this worker's is "
                            f"{signing.key_id(key)})")


def decompress(value: bytes) -> bytes:
    """The snapshot in a record's value: zlib, at most MAX_BYTES once decompressed."""
    inflate = zlib.decompressobj()
    try:
        blob = inflate.decompress(value, MAX_BYTES + 1)
    except zlib.error as exc:
        raise SnapshotError(f"not zlib: {exc}") from None
    if len(blob) > MAX_BYTES:
        raise SnapshotError(f"over {MAX_BYTES} bytes once decompressed")
    if not inflate.eof or inflate.unused_data:
        raise SnapshotError("not zlib: truncated, or bytes after its end")
    return blob


async def load_snapshot(settings: Settings, key: Ed25519PrivateKey | None,
                        timeout: float = 30.0) -> Snapshot:
    """The latest good record per detector name, read from the start of the topic to its end."""
    part = TopicPartition(topic_name(settings), 0)  # the topic has one partition
    consumer = AIOKafkaConsumer(**kafka_client_options(settings), group_id=None,
                                enable_auto_commit=False)
    await consumer.start()
    latest: dict[str, bytes] = {}
    skipped: list[tuple[str, str]] = []
    try:
        consumer.assign([part])
        await consumer.seek_to_beginning(part)
        end = (await consumer.end_offsets([part]))[part]
        deadline = time.monotonic() + timeout
        while await consumer.position(part) < end:
            if time.monotonic() > deadline:
                raise TimeoutError("model snapshot topic could not be read to its end")
            for records in (await consumer.getmany(part, timeout_ms=200)).values():
                for r in records:
                    name = "" if r.key is None else r.key.decode("utf-8", "replace")
                    try:
                        if r.key is None:
                            raise SnapshotError("no key (no detector name)")
                        check_record(name, r.value, r.headers, key)
                        if name not in latest and len(latest) >= MAX_NAMES:
                            raise SnapshotError(f"more than {MAX_NAMES} detector names")
                    except SnapshotError as err:
                        skipped.append((name, err.reason))
                        continue
                    latest[name] = r.value
    finally:
        await consumer.stop()
    return Snapshot(latest, skipped)


def restore(engine: Engine, snapshot: Snapshot) -> list[str]:
    """Load the engine's learned detectors from `snapshot`; returns the names restored. Every
    record skipped or refused is reported (stderr, metric) and its detector starts fresh."""
    learned = engine.learned()
    for name in learned:  # exported at 0, so an alert on increase() works from the start
        metrics.snapshots_rejected_of(name)
    blobs, refused = {}, []
    for name, value in snapshot.records.items():
        try:
            if name not in learned:
                raise SnapshotError("no learned detector of that name")
            blobs[name] = decompress(value)
        except SnapshotError as err:
            refused.append((name, err.reason))
    refused += engine.load_model_state(blobs).items()
    # Faust configures logging later, when the worker starts: say it on stderr.
    for name, reason in snapshot.skipped:
        _report(name, learned, f"skipped a model snapshot record of {short(name)}: {reason}")
    for name, reason in refused:
        _report(name, learned, f"refused the model snapshot of {short(name)}: {reason}; "
                               "it starts fresh and relearns")
    restored = sorted(set(blobs) - {name for name, _ in refused})
    if restored:
        print(f"intentwatch: restored learned models: {restored}", file=sys.stderr, flush=True)
    return restored


def _report(name: str, learned: list[str], line: str) -> None:
    print(f"intentwatch: {line}", file=sys.stderr, flush=True)
    metrics.snapshots_rejected_of(name if name in learned else UNKNOWN).inc()
