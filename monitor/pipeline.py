"""Raw record in, decisions out: the one path shared by the live worker and replay.

Decoding failures never raise: they come back as a ContractError for the caller to dead-letter,
and are counted. Side effects on the bus stay in the caller.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from . import gc_pacing, metrics
from .contracts import DEFAULT_MAX_BYTES, ContractError, decode
from .engine import Engine

log = logging.getLogger("intentwatch.pipeline")


class Pipeline:
    def __init__(self, engine: Engine, max_bytes: int = DEFAULT_MAX_BYTES):
        self.engine = engine
        self.max_bytes = max_bytes

    def handle(self, raw: bytes, key: bytes | None = None, lane: int | None = None
               ) -> tuple[list[dict], ContractError | None]:
        """Decide one record. `key` is the record's Kafka key, if it came from the bus: it must
        be the task id, or the event would be decided on another partition's state. `lane` is
        the record's partition, if it came from the bus (Engine.process)."""
        return self.handle_batch(((raw, key, lane),))[0]

    def handle_batch(self, records: Iterable[tuple]
                     ) -> list[tuple[list[dict], ContractError | None]]:
        """Decide (raw, key) or (raw, key, lane) records one after the other, in order (each as
        `handle` would): one (decisions, error) per record. The metrics are written once, at
        the end."""
        tally = metrics.Tally()
        results = [self._decide(tally, *record) for record in records]  # (never raises)
        tally.handled(self.engine.take_counts())
        tally.flush()
        gc_pacing.events_decided(len(results))
        return results

    def _decide(self, tally: metrics.Tally, raw: bytes, key: bytes | None,
                lane: int | None = None) -> tuple[list[dict], ContractError | None]:
        started = time.perf_counter()
        try:
            event = decode(raw, self.max_bytes)
            if key is not None and key != event["task_id"].encode():
                raise ContractError("key_mismatch", "record key is not the event's task_id")
            decisions = self.engine.process(event, lane)
        except ContractError as err:
            tally.dead_letter(err.code)
            return [], err
        except Exception as exc:  # a bug must not stop the worker, nor lose the record
            log.exception("engine failed on a record")
            err = ContractError("processing_error", f"{type(exc).__name__}: {exc}")
            tally.dead_letter(err.code)
            return [], err
        tally.decided(event["type"], time.perf_counter() - started, decisions)
        return decisions, None


def dead_letter_headers(err: ContractError, topic: str, partition: int | None = None,
                        offset: int | None = None) -> list[tuple[str, bytes]]:
    """Kafka headers of a dead-letter record; its value is the original bytes, unchanged."""
    headers = [("x-deadletter-reason", err.code.encode()),
               ("x-deadletter-error", err.message[:500].encode()),
               ("x-deadletter-topic", topic.encode())]
    if partition is not None:
        headers.append(("x-deadletter-partition", str(partition).encode()))
    if offset is not None:
        headers.append(("x-deadletter-offset", str(offset).encode()))
    return headers
