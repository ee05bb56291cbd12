"""`intentwatch enforce`: the consumer side of revocations, on plain aiokafka.

Reads revoke commands from the revocations topic in a consumer group, verifies each one
(`monitor.enforcement.Verifier`, trusted keys from INTENTWATCH_VERIFY_KEYS), hands the accepted
ones to the configured adapters (webhook, Vault; none: log only), and publishes one ack per
command on the acks topic:

    {"command_id", "task_id", "credential_ids", "status": "enforced"|"rejected"|"failed",
     "reason", "duplicate", "adapters": [{"adapter", "ok", "detail"}], "enforcer",
     "acked_at" (wall time), "issued_at" (from the command)}

`reason` is the verifier's reason for a rejected command, what failed for a failed one, and
null when enforced. For rejected commands `command_id`, `task_id` and `credential_ids` are what
the record claims, not authenticated. The offset of a record is committed after its ack is
written (at-least-once): a command redelivered to the same process is rejected as `replayed` by
the verifier's cache and acked as a duplicate (`duplicate: true`), without acting twice.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import Protocol

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import Counter as PromCounter

from monitor.config import Settings
from monitor.enforcement import REPLAYED, Verifier
from monitor.metrics import REGISTRY

from .kafka_security import kafka_client_options

log = logging.getLogger("intentwatch.enforcer")

ENFORCED, REJECTED, FAILED = "enforced", "rejected", "failed"
STATUSES = (ENFORCED, REJECTED, FAILED)
ENFORCEMENT = PromCounter("intentwatch_enforcement_total",
                          "Revoke commands the enforcer handled, by outcome", ["status"],
                          registry=REGISTRY)
for _status in STATUSES:
    ENFORCEMENT.labels(_status)


class Adapter(Protocol):
    """What the enforcer needs of an adapter: `name`, and `enforce` returning a result with
    `ok` and `detail`. `WebhookAdapter` and `VaultAdapter` are two."""

    name: str

    async def enforce(self, command: dict): ...


def verifier_from_settings(settings: Settings, **kwargs) -> Verifier:
    """A verifier trusting the public keys of INTENTWATCH_VERIFY_KEYS (comma-separated PEM
    files). Without any key every command would be refused, so that is an error."""
    from monitor.signing import load_public_key

    paths = [p.strip() for p in settings.verify_keys.split(",") if p.strip()]
    if not paths:
        raise ValueError("INTENTWATCH_VERIFY_KEYS is empty: the enforcer needs the public "
                         "key(s) of the monitor to verify revoke commands")
    return Verifier.for_keys([load_public_key(p) for p in paths], **kwargs)


async def handle(raw: bytes | None, verifier: Verifier, adapters: Sequence[Adapter],
                 enforcer: str) -> dict:
    """Verify one record's value, enforce it if accepted; return its ack."""
    try:
        command = orjson.loads(raw) if raw is not None else None
    except orjson.JSONDecodeError:
        command = None
    verdict = verifier.verify(command)
    fields = command if isinstance(command, dict) else {}
    ack = {
        "command_id": verdict.command_id,
        "task_id": fields.get("task_id") if isinstance(fields.get("task_id"), str) else None,
        "credential_ids": _str_list(fields.get("credential_ids")),
        "status": None, "reason": None, "duplicate": False, "adapters": [],
        "enforcer": enforcer, "acked_at": None,
        "issued_at": fields.get("issued_at") if _is_number(fields.get("issued_at")) else None,
    }
    if not verdict.accepted:
        ack["status"], ack["reason"] = REJECTED, verdict.reason
        ack["duplicate"] = verdict.reason == REPLAYED
    else:
        results = await asyncio.gather(*(a.enforce(command) for a in adapters),
                                       return_exceptions=True)
        outcomes = []
        for adapter, res in zip(adapters, results, strict=True):
            if isinstance(res, BaseException):
                if not isinstance(res, Exception):  # CancelledError and the like
                    raise res
                outcomes.append({"adapter": adapter.name, "ok": False,
                                 "detail": f"{type(res).__name__}: {res}"})
            else:
                outcomes.append({"adapter": adapter.name, "ok": bool(res.ok),
                                 "detail": str(res.detail)})
        ack["adapters"] = outcomes
        failed = [o for o in outcomes if not o["ok"]]
        ack["status"] = FAILED if failed else ENFORCED
        if failed:
            ack["reason"] = "; ".join(f"{o['adapter']}: {o['detail']}" for o in failed)
    ack["acked_at"] = time.time()
    return ack


async def run_enforcer(settings: Settings, verifier: Verifier, adapters: Sequence[Adapter],
                       *, stop_after: int | None = None, stop: asyncio.Event | None = None,
                       group_id: str | None = None, enforcer: str | None = None) -> Counter:
    """Consume, verify, enforce and ack until `stop` is set or `stop_after` records are
    handled. Returns the count of acks by status. The adapters stay open (the caller owns
    them)."""
    group_id = group_id or f"{settings.app_id}-enforcer"
    enforcer = enforcer or default_enforcer_name()
    timeouts = ({"session_timeout_ms": 6000, "heartbeat_interval_ms": 500}
                if settings.fast_rebalance else {})
    consumer = AIOKafkaConsumer(settings.topic_revocations, **kafka_client_options(settings),
                                group_id=group_id, enable_auto_commit=False,
                                # a new group starts at the beginning: an old command is then
                                # acked as expired, but none issued before the start is missed
                                auto_offset_reset="earliest", **timeouts)
    producer = AIOKafkaProducer(**kafka_client_options(settings), enable_idempotence=True)
    counts: Counter = Counter()
    await producer.start()
    try:
        await consumer.start()
        try:
            log.info("enforcer %s: %s -> acks on %s, adapters: %s", enforcer,
                     settings.topic_revocations, settings.topic_acks,
                     [a.name for a in adapters] or "none (log only)")
            while not (stop is not None and stop.is_set()) and not _done(counts, stop_after):
                batch = await consumer.getmany(timeout_ms=500)
                for tp, records in batch.items():
                    for record in records:
                        if _done(counts, stop_after):
                            break  # uncommitted: the group redelivers it to the next reader
                        ack = await handle(record.value, verifier, adapters, enforcer)
                        await producer.send_and_wait(settings.topic_acks, orjson.dumps(ack),
                                                     key=record.key)
                        await consumer.commit({TopicPartition(tp.topic, tp.partition):
                                               record.offset + 1})
                        counts[ack["status"]] += 1
                        ENFORCEMENT.labels(ack["status"]).inc()
                        _log_ack(ack)
        finally:
            await consumer.stop()
    finally:
        await producer.stop()
    return counts


def _done(counts: Counter, stop_after: int | None) -> bool:
    return stop_after is not None and sum(counts.values()) >= stop_after


def _log_ack(ack: dict) -> None:
    what = f"command {ack['command_id']} task {ack['task_id']} {ack['credential_ids']}"
    if ack["status"] == ENFORCED:
        log.info("enforced %s: %s", what,
                 "; ".join(f"{o['adapter']}: {o['detail']}" for o in ack["adapters"]) or
                 "no adapters, logged only")
    elif ack["duplicate"]:
        log.info("duplicate %s: already handled", what)
    else:
        log.warning("%s %s: %s", ack["status"], what, ack["reason"])


def default_enforcer_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _str_list(value) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# -- command line -------------------------------------------------------------------------------
def add_enforce_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("enforce", help="verify revoke commands and enforce them (webhook, "
                                       "Vault); publish an ack per command")
    p.add_argument("--webhook", metavar="URL", action="append", default=[],
                   help="POST each verified command here (may be repeated)")
    p.add_argument("--webhook-timeout", type=float, default=5.0, metavar="SECONDS",
                   help="timeout of one webhook attempt (default 5)")
    p.add_argument("--vault-mapping", metavar="FILE",
                   help="JSON: credential id -> {\"accessor\": ...} or {\"lease_id\": ...}; "
                        "enables Vault revocation")
    p.add_argument("--vault-addr", default=os.environ.get("VAULT_ADDR"),
                   help="Vault address (default $VAULT_ADDR)")
    p.add_argument("--vault-token", default=None,
                   help="Vault token (default $VAULT_TOKEN, preferred: a command line is "
                        "visible to other users)")
    p.add_argument("--group", help="consumer group (default <INTENTWATCH_APP_ID>-enforcer)")
    p.add_argument("--name", help="enforcer name in the acks (default host:pid)")
    p.add_argument("--metrics-port", type=int, default=0,
                   help="serve Prometheus metrics on this port (default: off)")
    p.add_argument("--loglevel", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=cmd_enforce)
    return p


def cmd_enforce(args, settings: Settings) -> int:
    from monitor.enforcement.vault import VaultAdapter, load_mapping
    from monitor.enforcement.webhook import WebhookAdapter

    from .produce import ensure_topics

    logging.basicConfig(level=args.loglevel.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        verifier = verifier_from_settings(settings)
        adapters: list = [WebhookAdapter(url, timeout=args.webhook_timeout)
                          for url in args.webhook]
        if args.vault_mapping:
            token = args.vault_token or os.environ.get("VAULT_TOKEN")
            if not args.vault_addr or not token:
                raise ValueError("--vault-mapping needs --vault-addr (or VAULT_ADDR) and "
                                 "--vault-token (or VAULT_TOKEN)")
            adapters.append(VaultAdapter(args.vault_addr, token, load_mapping(args.vault_mapping)))
        elif args.vault_addr and args.vault_token:
            raise ValueError("Vault revocation needs --vault-mapping")
    except (ValueError, TypeError) as exc:  # bad key file, mapping or URL
        print(f"intentwatch: {exc}", file=sys.stderr)
        return 2
    if args.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port, registry=REGISTRY)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await ensure_topics(settings, [settings.topic_revocations, settings.topic_acks])
        try:
            await run_enforcer(settings, verifier, adapters, stop=stop, group_id=args.group,
                               enforcer=args.name)
        finally:
            for adapter in adapters:
                await adapter.close()

    asyncio.run(main())
    return 0
