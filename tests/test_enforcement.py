"""Enforcement of revoke commands: the webhook and Vault adapters against local HTTP servers
(real sockets), and `intentwatch enforce` on the real Kafka broker."""

from __future__ import annotations

import asyncio
import base64
import copy
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from monitor import signing
from monitor.config import Settings
from monitor.enforcement import Verifier
from monitor.enforcement.vault import VaultAdapter, check_mapping, load_mapping
from monitor.enforcement.webhook import (
    COMMAND_ID_HEADER,
    KEY_ID_HEADER,
    SIGNATURE_HEADER,
    WebhookAdapter,
)
from monitor.metrics import REGISTRY
from monitor.revocation import revoke_command
from streams import enforcer, local
from streams.produce import ensure_topics

VAULT_TOKEN = "s.enforcer-test-token"


# -- local HTTP servers --------------------------------------------------------------------------
@dataclass
class Request:
    method: str
    path: str
    headers: dict  # lower-case names
    body: bytes

    def json(self):
        return orjson.loads(self.body)


class FakeHTTP:
    """An HTTP server on 127.0.0.1 (free port, own thread) that records every request and
    answers with `respond(request) -> (status, json body or None, delay seconds)`."""

    def __init__(self, respond):
        self.respond, self.requests = respond, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_any(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                req = Request(self.command, self.path,
                              {k.lower(): v for k, v in self.headers.items()}, body)
                outer.requests.append(req)
                status, payload, delay = outer.respond(req)
                if delay:
                    time.sleep(delay)
                data = b"" if payload is None else orjson.dumps(payload)
                self.send_response(status)
                if data:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = handle_any

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


class FakeVault(FakeHTTP):
    """Stands in for HashiCorp Vault (not available on this machine): answers the two calls
    hvac 2.4 makes to revoke, as Vault does, and records them.

    POST /v1/auth/token/revoke-accessor {"accessor"} and PUT /v1/sys/leases/revoke
    {"lease_id"}: 204 when the X-Vault-Token header is the right token, 403 "permission
    denied" otherwise, 400 "invalid accessor" / "invalid lease" for ids it doesn't know.
    `fail_first` answers the first N calls with 503 (Vault sealed or restarting)."""

    def __init__(self, accessors=(), leases=(), fail_first=0):
        self.accessors, self.leases, self.fail_first = set(accessors), set(leases), fail_first
        super().__init__(self._answer)

    def _answer(self, req: Request):
        if len(self.requests) <= self.fail_first:
            return 503, {"errors": ["Vault is sealed"]}, 0
        if req.headers.get("x-vault-token") != VAULT_TOKEN:
            return 403, {"errors": ["permission denied"]}, 0
        if req.method == "POST" and req.path == "/v1/auth/token/revoke-accessor":
            ok = req.json().get("accessor") in self.accessors
            return (204, None, 0) if ok else (400, {"errors": ["invalid accessor"]}, 0)
        if req.method == "PUT" and req.path == "/v1/sys/leases/revoke":
            ok = req.json().get("lease_id") in self.leases
            return (204, None, 0) if ok else (400, {"errors": ["invalid lease"]}, 0)
        return 404, {"errors": []}, 0


# -- commands -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def key():
    private_pem, public_pem = signing.generate_key_pair()
    return signing.load_private_key(private_pem), signing.load_public_key(public_pem)


def make_command(task_id="t1", creds=("cred-a", "cred-b"), at=None):
    at = time.time() if at is None else at
    task = {"task_id": task_id, "intent": {"agent_id": "agent-1", "workload_id": "spiffe://x/y"}}
    decision = {"reasons": [{"detector": "credential_binding", "code": "credential_foreign",
                             "risk": 1.0}],
                "agent_id": "agent-1", "risk": 1.0, "event_id": "e1", "event_time": at}
    return revoke_command(task, list(creds), decision)


def sign(command, key):
    private, _ = key
    return signing.sign_command(command, private, signing.key_id(private))


def receiver_verifies(req: Request, public) -> bool:
    """What a webhook receiver does: check the signature header against the body."""
    sig = req.headers[SIGNATURE_HEADER.lower()]
    raw = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
    public.verify(raw, signing.canonical_bytes(req.json()))  # raises if it does not hold
    return req.headers[KEY_ID_HEADER.lower()] == signing.key_id(public)


# -- webhook adapter ----------------------------------------------------------------------------
def post(adapter, command):
    async def go():
        async with adapter:
            return await adapter.enforce(command)
    return asyncio.run(go())


def test_webhook_posts_the_signed_command_with_its_signature(key):
    command = sign(make_command(), key)
    with FakeHTTP(lambda req: (204, None, 0)) as hook:
        result = post(WebhookAdapter(hook.url + "/revoke", timeout=2), command)
    assert result.ok and result.status == 204 and result.attempts == 1
    [req] = hook.requests
    assert (req.method, req.path) == ("POST", "/revoke")
    assert req.headers["content-type"] == "application/json"
    assert req.json() == command
    assert req.headers[SIGNATURE_HEADER.lower()] == command["signature"]
    assert req.headers[COMMAND_ID_HEADER.lower()] == command["command_id"]
    assert receiver_verifies(req, key[1])
    # and the receiver can run the full verifier on the body, with the same public key
    assert Verifier.for_keys([key[1]]).verify(req.json()).accepted


def test_webhook_retries_transient_failures_then_succeeds(key):
    answers = iter([(503, {"error": "busy"}, 0), (429, None, 0), (200, {"ok": True}, 0)])
    with FakeHTTP(lambda req: next(answers)) as hook:
        result = post(WebhookAdapter(hook.url, timeout=2, backoff=0.01), sign(make_command(), key))
    assert result.ok and result.status == 200 and result.attempts == 3
    assert len(hook.requests) == 3


def test_webhook_does_not_retry_a_refusal(key):
    with FakeHTTP(lambda req: (400, {"error": "unknown credential"}, 0)) as hook:
        result = post(WebhookAdapter(hook.url, timeout=2, backoff=0.01), sign(make_command(), key))
    assert not result.ok and result.status == 400 and result.attempts == 1
    assert "unknown credential" in result.detail
    assert len(hook.requests) == 1


def test_webhook_gives_up_after_its_attempts(key):
    with FakeHTTP(lambda req: (502, None, 0)) as hook:
        result = post(WebhookAdapter(hook.url, timeout=2, attempts=3, backoff=0.01),
                      sign(make_command(), key))
    assert not result.ok and result.attempts == 3 and "gave up after 3" in result.detail
    assert len(hook.requests) == 3


def test_webhook_timeout_and_unreachable_endpoint_fail(key):
    with FakeHTTP(lambda req: (200, None, 1.5)) as hook:
        slow = post(WebhookAdapter(hook.url, timeout=0.2, attempts=2, backoff=0.01),
                    sign(make_command(), key))
    assert not slow.ok and "timed out" in slow.detail and slow.status is None
    down = post(WebhookAdapter(f"http://127.0.0.1:{local.free_port()}", timeout=1, attempts=2,
                               backoff=0.01), sign(make_command(), key))
    assert not down.ok and "ClientConnectorError" in down.detail


def test_webhook_refuses_unsigned_commands_and_bad_urls():
    with FakeHTTP(lambda req: (204, None, 0)) as hook:
        result = post(WebhookAdapter(hook.url), make_command())
    assert not result.ok and "not signed" in result.detail and hook.requests == []
    with pytest.raises(ValueError):
        WebhookAdapter("ftp://example.invalid/")


# -- Vault adapter ------------------------------------------------------------------------------
MAPPING = {"cred-a": {"accessor": "acc-a"}, "cred-b": {"lease_id": "database/creds/ro/b1"}}


def test_vault_revokes_accessor_and_lease_and_skips_unmapped(key):
    command = sign(make_command(creds=("cred-a", "cred-b", "cred-x")), key)
    with FakeVault(accessors={"acc-a"}, leases={"database/creds/ro/b1"}) as vault:
        adapter = VaultAdapter(vault.url, VAULT_TOKEN, MAPPING, timeout=2)
        result = asyncio.run(adapter.enforce(command))
        asyncio.run(adapter.close())
    assert result.ok
    assert result.revoked == ["cred-a", "cred-b"] and result.skipped == ["cred-x"]
    assert "skipped" in result.detail and "cred-x" in result.detail
    calls = [(r.method, r.path, r.json()) for r in vault.requests]
    assert calls == [("POST", "/v1/auth/token/revoke-accessor", {"accessor": "acc-a"}),
                     ("PUT", "/v1/sys/leases/revoke", {"lease_id": "database/creds/ro/b1"})]
    assert all(r.headers["x-vault-token"] == VAULT_TOKEN for r in vault.requests)
    assert VAULT_TOKEN not in repr(adapter)


def test_vault_reports_failures_and_does_not_retry_them(key):
    command = sign(make_command(creds=("cred-a", "cred-b")), key)
    with FakeVault(accessors={"acc-a"}, leases=set()) as vault:
        result = VaultAdapter(vault.url, VAULT_TOKEN, MAPPING, backoff=0.01).revoke(command)
        denied = VaultAdapter(vault.url, "s.wrong", MAPPING, backoff=0.01).revoke(command)
    assert not result.ok and result.revoked == ["cred-a"]
    assert "invalid lease" in result.failed["cred-b"]
    assert not denied.ok and denied.revoked == [] and set(denied.failed) == {"cred-a", "cred-b"}
    assert "permission denied" in denied.failed["cred-a"]
    assert len(vault.requests) == 4  # one call per credential and token: none retried


def test_vault_retries_while_vault_is_unavailable(key):
    command = sign(make_command(creds=("cred-a",)), key)
    with FakeVault(accessors={"acc-a"}, fail_first=2) as vault:
        result = VaultAdapter(vault.url, VAULT_TOKEN, MAPPING, backoff=0.01).revoke(command)
    assert result.ok and result.revoked == ["cred-a"]
    assert len(vault.requests) == 3


def test_vault_mapping_is_validated(tmp_path):
    for bad in ([], {"c": "acc"}, {"c": {}}, {"c": {"accessor": "a", "lease_id": "l"}},
                {"c": {"token": "t"}}, {"c": {"accessor": ""}}):
        with pytest.raises((ValueError, TypeError)):
            check_mapping(bad)
    path = tmp_path / "mapping.json"
    path.write_bytes(orjson.dumps(MAPPING))
    assert load_mapping(path) == MAPPING
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not JSON"):
        load_mapping(path)


# -- the enforcer, without a broker ---------------------------------------------------------------
class Broken:
    name = "broken"

    async def enforce(self, command):
        raise RuntimeError("boom")


def test_handle_acks_failed_when_an_adapter_raises(key):
    verifier = Verifier.for_keys([key[1]])
    ack = asyncio.run(enforcer.handle(orjson.dumps(sign(make_command(), key)), verifier,
                                      [Broken()], "e1"))
    assert ack["status"] == "failed" and "boom" in ack["reason"]
    assert ack["adapters"] == [{"adapter": "broken", "ok": False, "detail": "RuntimeError: boom"}]
    junk = asyncio.run(enforcer.handle(b"not json", verifier, [], "e1"))
    assert junk["status"] == "rejected" and junk["reason"] == "malformed"
    assert junk["command_id"] is None and junk["credential_ids"] == []


# -- the enforcer on the real broker --------------------------------------------------------------
def sample(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.kafka
def test_enforcer_acts_once_on_the_valid_command_and_acks_everything(kafka, key):
    prefix = f"enf{int(time.time() * 1000) % 10**9}"
    settings = Settings(broker=f"kafka://{kafka}", app_id=f"iw-{prefix}",
                        topic_revocations=f"{prefix}.revocations", topic_acks=f"{prefix}.acks",
                        fast_rebalance=True)
    valid = sign(make_command("task-1", ("cred-a", "cred-b")), key)
    forged = copy.deepcopy(valid)
    forged["credential_ids"] = ["cred-a", "cred-other"]
    unsigned = make_command("task-2", ("cred-c",))
    records = [(b"task-1", valid), (b"task-1", forged), (b"task-2", unsigned),
               (b"task-1", valid)]  # the last: a redelivery / replay of the valid one

    rejections = {r: sample("intentwatch_revoke_rejections_total", reason=r)
                  for r in ("bad_signature", "unsigned", "replayed")}
    outcomes = {s: sample("intentwatch_enforcement_total", status=s)
                for s in ("enforced", "rejected")}

    async def scenario(hook_url, vault_url):
        await ensure_topics(settings, [settings.topic_revocations, settings.topic_acks])
        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap)
        await producer.start()
        try:
            for k, command in records:
                await producer.send_and_wait(settings.topic_revocations, orjson.dumps(command),
                                             key=k)
        finally:
            await producer.stop()
        adapters = [WebhookAdapter(hook_url, timeout=5),
                    VaultAdapter(vault_url, VAULT_TOKEN, MAPPING)]
        verifier = Verifier.for_keys([key[1]])
        try:
            counts = await asyncio.wait_for(enforcer.run_enforcer(
                settings, verifier, adapters, stop_after=len(records), enforcer="test-enf"), 90)
            # Offsets were committed: the group's next reader gets nothing more.
            stop = asyncio.Event()
            asyncio.get_running_loop().call_later(8, stop.set)
            again = await enforcer.run_enforcer(settings, verifier, adapters, stop=stop)
        finally:
            for a in adapters:
                await a.close()
        acks = await local.read_topics(settings.bootstrap, [settings.topic_acks],
                                       lambda rs: len(rs) >= len(records), timeout=30)
        return counts, again, local.values(acks)

    with (FakeHTTP(lambda req: (204, None, 0)) as hook,
          FakeVault(accessors={"acc-a"}, leases={"database/creds/ro/b1"}) as vault):
        counts, again, acks = asyncio.run(scenario(hook.url + "/revoke", vault.url))

    # The webhook got exactly one POST, the valid command, and Vault one revocation of each.
    assert [r.json() for r in hook.requests] == [valid]
    assert receiver_verifies(hook.requests[0], key[1])
    assert [(r.method, r.path) for r in vault.requests] == [
        ("POST", "/v1/auth/token/revoke-accessor"), ("PUT", "/v1/sys/leases/revoke")]

    assert counts == {"enforced": 1, "rejected": 3} and not again
    assert len(acks) == len(records)
    by_outcome = sorted((a["status"], a["reason"] or "", a["task_id"]) for a in acks)
    assert by_outcome == [("enforced", "", "task-1"), ("rejected", "bad_signature", "task-1"),
                          ("rejected", "replayed", "task-1"), ("rejected", "unsigned", "task-2")]
    enforced = next(a for a in acks if a["status"] == "enforced")
    assert enforced["command_id"] == valid["command_id"]
    assert enforced["credential_ids"] == ["cred-a", "cred-b"]
    assert enforced["issued_at"] == valid["issued_at"] and enforced["enforcer"] == "test-enf"
    assert {o["adapter"]: o["ok"] for o in enforced["adapters"]} == {"webhook": True,
                                                                     "vault": True}
    assert abs(enforced["acked_at"] - time.time()) < 120
    replay = next(a for a in acks if a["reason"] == "replayed")
    assert replay["duplicate"] and replay["command_id"] == valid["command_id"]
    assert not any(a["duplicate"] for a in acks if a is not replay)

    for reason, before in rejections.items():
        assert sample("intentwatch_revoke_rejections_total", reason=reason) == before + 1
    assert sample("intentwatch_enforcement_total", status="enforced") == outcomes["enforced"] + 1
    assert sample("intentwatch_enforcement_total", status="rejected") == outcomes["rejected"] + 3


@pytest.mark.kafka
def test_enforce_command_verifies_with_configured_keys_and_stops_on_sigterm(kafka, key,
                                                                          tmp_path):
    import subprocess
    import sys

    prefix = f"enfcli{int(time.time() * 1000) % 10**9}"
    public_path = tmp_path / "monitor.pub.pem"
    public_path.write_bytes(signing.public_key_pem(key[1]))
    env = local.worker_env(kafka, app_id=f"iw-{prefix}", topic_revocations=f"{prefix}.rev",
                           topic_acks=f"{prefix}.acks", verify_keys=public_path,
                           fast_rebalance=1)
    settings = Settings(broker=f"kafka://{kafka}", topic_revocations=f"{prefix}.rev",
                        topic_acks=f"{prefix}.acks")
    command = sign(make_command("task-cli"), key)

    async def publish():
        await ensure_topics(settings, [settings.topic_revocations, settings.topic_acks])
        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(settings.topic_revocations, orjson.dumps(command))
        finally:
            await producer.stop()

    asyncio.run(publish())
    log = tmp_path / "enforcer.log"
    with FakeHTTP(lambda req: (200, None, 0)) as hook, open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "enforce", "--webhook",
                                 hook.url, "--name", "cli-enf"], env=env, cwd=str(local.ROOT),
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            acks = local.values(asyncio.run(local.read_topics(
                kafka, [settings.topic_acks], lambda rs: len(rs) >= 1, timeout=60)))
        finally:
            rc = local.stop_worker(proc)
    assert [a["status"] for a in acks] == ["enforced"], log.read_text()
    assert acks[0]["enforcer"] == "cli-enf" and [r.json() for r in hook.requests] == [command]
    assert rc == 0, log.read_text()
