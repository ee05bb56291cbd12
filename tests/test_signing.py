"""Signed revoke commands and their verification by consumers, with real Ed25519 keys."""

import base64
import copy

import orjson
import pytest

from monitor import signing
from monitor.enforcement import Verifier
from monitor.enforcement.verify import ReplayCache
from monitor.metrics import REGISTRY
from monitor.revocation import revoke_command

T0 = 1_700_000_000.0


def make_command(task_id="t1", creds=("cred-a", "cred-b"), reason="credential_foreign"):
    task = {"task_id": task_id, "intent": {"agent_id": "agent-1", "workload_id": "spiffe://x/y"}}
    decision = {"reasons": [{"detector": "credential_binding", "code": reason, "risk": 1.0}],
                "agent_id": "agent-1", "risk": 1.0, "event_id": "e1", "event_time": T0}
    return revoke_command(task, list(creds), decision)


class Clock:
    def __init__(self, now=T0 + 1):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture(scope="module")
def keys():
    """Two independent key pairs, as a deployment would load them from PEM."""
    out = []
    for _ in range(2):
        private_pem, public_pem = signing.generate_key_pair()
        out.append((signing.load_private_key(private_pem), signing.load_public_key(public_pem)))
    return out


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def verifier(keys, clock):
    return Verifier.for_keys([keys[0][1], keys[1][1]], clock=clock)


def signed(keys, command=None, which=0):
    private, _ = keys[which]
    return signing.sign_command(command or make_command(), private, signing.key_id(private))


def round_trip(command):
    """What a consumer sees: the command as JSON off the bus."""
    return orjson.loads(orjson.dumps(command))


def test_sign_and_verify(keys, verifier):
    cmd = signed(keys)
    assert cmd["key_id"] == signing.key_id(keys[0][1]) and len(cmd["key_id"]) == 16
    verdict = verifier.verify(round_trip(cmd))
    assert verdict.accepted and verdict.reason is None
    assert verdict.command_id == cmd["command_id"]


def test_signing_is_deterministic_and_does_not_modify_input(keys):
    cmd = make_command()
    before = copy.deepcopy(cmd)
    assert signed(keys, cmd) == signed(keys, cmd)
    assert cmd == before
    # Re-signing a signed command replaces the signature rather than signing it.
    assert signed(keys, signed(keys, cmd)) == signed(keys, cmd)


@pytest.mark.parametrize("field,value", [
    ("credential_ids", ["cred-a", "cred-b", "cred-c"]),
    ("credential_ids", ["cred-a"]),
    ("expires_at", T0 + 86_400),
    ("reason", "policy"),
    ("task_id", "t2"),
])
def test_tampered_field_is_bad_signature(keys, verifier, field, value):
    cmd = signed(keys)
    cmd[field] = value
    assert verifier.verify(cmd).reason == "bad_signature"


def test_tampered_nested_evidence_and_added_field_are_bad_signature(keys, verifier):
    cmd = signed(keys)
    cmd["evidence"][0]["risk"] = 0.1
    assert verifier.verify(cmd).reason == "bad_signature"
    cmd = signed(keys)
    cmd["extra"] = True
    assert verifier.verify(cmd).reason == "bad_signature"


def test_other_key_claiming_trusted_key_id_is_bad_signature(keys, verifier):
    # Signed with key 1, but claims key 0's id: the signature covers key_id and key 0 refuses it.
    cmd = signing.sign_command(make_command(), keys[1][0], signing.key_id(keys[0][1]))
    assert verifier.verify(cmd).reason == "bad_signature"


def test_switching_key_id_to_another_trusted_key_is_bad_signature(keys, verifier):
    cmd = signed(keys, which=0)
    cmd["key_id"] = signing.key_id(keys[1][1])
    assert verifier.verify(cmd).reason == "bad_signature"


def test_mangled_signature_is_bad_signature(keys, verifier):
    cmd = signed(keys)
    sig = cmd["signature"]
    for bad in [sig[:-1], sig + "A", sig[:-2] + ("B" if sig[-2] != "B" else "C") + sig[-1],
                "!" + sig[1:], "é" + sig[1:]]:
        assert verifier.verify({**cmd, "signature": bad}).reason == "bad_signature", bad
    # Same 64 bytes, other spelling (a non-zero unused trailing bit): only one encoding counts.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    respelled = sig[:-1] + alphabet[alphabet.index(sig[-1]) ^ 1]
    assert base64.urlsafe_b64decode(respelled + "==") == \
        base64.urlsafe_b64decode(sig + "==")
    assert verifier.verify({**cmd, "signature": respelled}).reason == "bad_signature"


def test_unknown_key(keys, clock):
    only_key_1 = Verifier.for_keys([keys[1][1]], clock=clock)
    assert only_key_1.verify(signed(keys, which=0)).reason == "unknown_key"


def test_missing_signature_is_unsigned(keys, verifier):
    assert verifier.verify(make_command()).reason == "unsigned"
    cmd = signed(keys)
    del cmd["signature"]
    assert verifier.verify(cmd).reason == "unsigned"


def test_expired_and_not_yet_valid(keys, verifier, clock):
    cmd = signed(keys)
    clock.now = cmd["expires_at"] + 0.001
    assert verifier.verify(cmd).reason == "expired"
    clock.now = cmd["issued_at"] - 3600  # issued an hour in the future, beyond the skew
    assert verifier.verify(cmd).reason == "not_yet_valid"
    clock.now = cmd["issued_at"] - 10  # within the skew
    assert verifier.verify(cmd).accepted


def test_replay_of_same_command_and_of_resigned_copy(keys, verifier):
    cmd = signed(keys, which=0)
    assert verifier.verify(cmd).accepted
    assert verifier.verify(copy.deepcopy(cmd)).reason == "replayed"
    assert verifier.verify(signed(keys, which=1)).reason == "replayed"  # same id, other key
    # A new command (other credentials, so another id) is not blocked by the old one.
    fresh = signed(keys, make_command(creds=("cred-z",)))
    assert fresh["command_id"] != cmd["command_id"]
    assert verifier.verify(fresh).accepted


def test_rejected_forgery_does_not_burn_the_real_command_id(keys, verifier):
    forged = signing.sign_command(make_command(), keys[1][0], signing.key_id(keys[0][1]))
    assert verifier.verify(forged).reason == "bad_signature"
    assert verifier.verify(signed(keys)).accepted


def test_malformed(keys, verifier):
    assert verifier.verify("not a dict").reason == "malformed"
    assert verifier.verify({**signed(keys), "signature": 123}).reason == "malformed"
    no_key_id = signed(keys)
    del no_key_id["key_id"]
    assert verifier.verify(no_key_id).reason == "malformed"
    # Authentic but broken contents (a broken issuer) are malformed, not accepted.
    for field, value in [("expires_at", "soon"), ("type", "other.command"),
                         ("credential_ids", "cred-a"), ("command_id", None),
                         ("expires_at", T0 - 1)]:
        cmd = signed(keys, {**make_command(), field: value})
        assert verifier.verify(cmd).reason == "malformed", field


def test_sign_refuses_non_finite_numbers_and_empty_key_id(keys):
    with pytest.raises(ValueError):
        signed(keys, {**make_command(), "risk": float("nan")})
    with pytest.raises(ValueError):
        signing.sign_command(make_command(), keys[0][0], "")


def test_keys_load_from_files_and_text(tmp_path):
    private_pem, public_pem = signing.generate_key_pair()
    (tmp_path / "k.pem").write_bytes(private_pem)
    from_file = signing.load_private_key(tmp_path / "k.pem")
    from_str_path = signing.load_private_key(str(tmp_path / "k.pem"))
    from_text = signing.load_private_key(private_pem.decode())
    public = signing.load_public_key(public_pem)
    assert {signing.key_id(k) for k in (from_file, from_str_path, from_text, public)} == {
        signing.key_id(public)}


def test_replay_cache_forgets_after_expiry_and_stays_bounded():
    cache = ReplayCache(capacity=2, retain_after_expiry=5)
    assert cache.add("a", expires_at=10, now=0)
    assert not cache.add("a", expires_at=10, now=14)  # within the margin: still remembered
    assert cache.add("a", expires_at=30, now=16)  # forgotten past expiry + margin
    assert cache.add("b", expires_at=20, now=16) and cache.add("c", expires_at=40, now=16)
    # Full: adding "c" dropped "b", the id closest to expiry; "a" and "c" are still known.
    assert len(cache) == 2
    assert not cache.add("a", 30, 16) and not cache.add("c", 40, 16)
    assert cache.add("b", 20, 16)


def test_metrics_count_accepted_and_rejections_by_reason(keys, verifier):
    def sample(name, **labels):
        return REGISTRY.get_sample_value(name, labels) or 0.0

    accepted = sample("intentwatch_revoke_accepted_total")
    replayed = sample("intentwatch_revoke_rejections_total", reason="replayed")
    unsigned = sample("intentwatch_revoke_rejections_total", reason="unsigned")
    cmd = signed(keys, make_command(task_id="metrics"))
    verifier.verify(cmd)
    verifier.verify(cmd)
    verifier.verify(make_command())
    assert sample("intentwatch_revoke_accepted_total") == accepted + 1
    assert sample("intentwatch_revoke_rejections_total", reason="replayed") == replayed + 1
    assert sample("intentwatch_revoke_rejections_total", reason="unsigned") == unsigned + 1
    # Every reason is exported from the start, at zero or more.
    for reason in ("unknown_key", "bad_signature", "expired", "not_yet_valid", "malformed"):
        assert REGISTRY.get_sample_value("intentwatch_revoke_rejections_total",
                                         {"reason": reason}) is not None
