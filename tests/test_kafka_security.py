"""Kafka over SASL/SCRAM and TLS: the settings, and a second, secure broker (deploy/kafka/
kafka-local.sh with KAFKA_SECURITY=scram-tls) that a real worker and `intentwatch produce` use;
wrong credentials, a wrong CA and a wrong protocol end a command with a message naming them."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import sys

import faust
import pytest
from aiokafka.errors import KafkaConnectionError

from monitor.config import ConfigError, Settings, load_settings
from monitor.enforcement.verify import Verifier
from monitor.signing import load_public_key
from streams import local
from streams.kafka_security import faust_credentials, kafka_client_options

from .conftest import SAMPLE_CATALOG, SAMPLE_TRACE
from .secure_broker import secure_kafka_fixture  # noqa: F401 (the secure_kafka fixture)

CLI = [sys.executable, "-m", "streams.cli"]


# -- settings (no broker) ------------------------------------------------------------------
def load(**env) -> Settings:
    return load_settings(None, {f"INTENTWATCH_{k.upper()}": str(v) for k, v in env.items()})[0]


def test_sasl_needs_user_and_password_and_the_error_hides_the_password():
    with pytest.raises(ConfigError, match="sasl_username \\(default\\): must be set with "
                                          "security_protocol SASL_SSL"):
        load(security_protocol="SASL_SSL", sasl_password="pw-hidden-1")
    with pytest.raises(ConfigError, match="sasl_password.*must be set") as err:
        load(security_protocol="SASL_PLAINTEXT", sasl_username="u")
    assert "pw-hidden-1" not in str(err.value)


def test_settings_the_protocol_would_ignore_are_refused(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("not read by the settings check")
    with pytest.raises(ConfigError, match="uses no SASL"):
        load(sasl_username="u", sasl_password="p")               # PLAINTEXT
    with pytest.raises(ConfigError, match="ssl_cafile.*uses no TLS"):
        load(security_protocol="SASL_PLAINTEXT", sasl_username="u", sasl_password="p",
             ssl_cafile=ca)
    with pytest.raises(ConfigError, match="go together"):
        load(security_protocol="SSL", ssl_certfile=ca)


def test_unknown_protocol_mechanism_and_missing_files_are_named(tmp_path):
    with pytest.raises(ConfigError, match="INTENTWATCH_SECURITY_PROTOCOL.*must be one of"):
        load(security_protocol="TLS")
    with pytest.raises(ConfigError, match="INTENTWATCH_SASL_MECHANISM.*must be one of"):
        load(security_protocol="SASL_SSL", sasl_username="u", sasl_password="p",
             sasl_mechanism="GSSAPI")
    missing = tmp_path / "nowhere" / "ca.pem"
    with pytest.raises(ConfigError, match=f"INTENTWATCH_SSL_CAFILE.*{missing}.*no such file"):
        load(security_protocol="SSL", ssl_cafile=missing)


def test_one_helper_gives_every_client_its_options():
    plain = kafka_client_options(Settings(broker="kafka://a:1;b:2"))
    assert plain == {"bootstrap_servers": "a:1,b:2", "security_protocol": "PLAINTEXT"}
    assert faust_credentials(Settings()) is None
    sasl = Settings(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-256",
                    sasl_username="u", sasl_password="pw-secret-9")
    options = kafka_client_options(sasl)
    assert options["security_protocol"] == "SASL_SSL"
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    assert options["ssl_context"].check_hostname                 # the broker's name is verified
    assert (options["sasl_mechanism"], options["sasl_plain_username"],
            options["sasl_plain_password"]) == ("SCRAM-SHA-256", "u", "pw-secret-9")
    creds = faust_credentials(sasl)
    assert isinstance(creds, faust.SASLCredentials) and creds.protocol.value == "SASL_SSL"
    assert creds.mechanism.value == "SCRAM-SHA-256" and "pw-secret-9" not in repr(creds)
    assert "pw-secret-9" not in repr(sasl)
    assert isinstance(faust_credentials(Settings(security_protocol="SSL")), faust.SSLCredentials)
    no_tls = faust_credentials(Settings(security_protocol="SASL_PLAINTEXT", sasl_username="u",
                                        sasl_password="p"))
    assert no_tls.protocol.value == "SASL_PLAINTEXT"


# -- the secure broker ---------------------------------------------------------------------
def cli(args: list[str], env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], env=env, cwd=str(local.ROOT), capture_output=True,
                          text=True, timeout=timeout, check=False)


def topics(prefix: str) -> dict:
    return {f"topic_{k}": f"{prefix}.{k}" for k in
            ("intents", "actions", "decisions", "alerts", "revocations", "dead_letters", "acks")}


@pytest.mark.kafka
def test_the_only_client_listener_is_sasl_ssl(secure_kafka):
    bootstrap, _, state = secure_kafka
    props = dict(line.split("=", 1) for line in (state / "server.properties").read_text()
                 .splitlines() if "=" in line and not line.startswith("#"))
    assert props["advertised.listeners"] == f"SASL_SSL://{bootstrap}"
    listeners = props["listeners"].split(",")
    assert listeners[0] == f"SASL_SSL://{bootstrap}" and len(listeners) == 2
    assert listeners[1].startswith("CONTROLLER://127.0.0.1:")     # KRaft's quorum only
    assert props["listener.security.protocol.map"] == "SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT"
    # The controller's plaintext port serves no client: produce there fails (and ends).
    controller = listeners[1].split("//", 1)[1]
    out = cli(["produce", str(SAMPLE_TRACE)], local.worker_env(controller, **topics("ctl")))
    assert out.returncode == 1, out.stderr


@pytest.mark.kafka
def test_worker_and_produce_over_sasl_ssl_decide_the_sample_trace(secure_kafka, tmp_path,
                                                                  signing_keys):
    bootstrap, security, _ = secure_kafka
    names = topics("sec")
    web_port = local.free_port()
    env = local.worker_env(bootstrap, **names, **security, app_id="iw-secure", fast_rebalance=1,
                           catalog=SAMPLE_CATALOG, web_port=web_port,
                           data_dir=tmp_path / "data", signing_key=signing_keys[0])
    log = tmp_path / "worker.log"
    proc = local.start_worker(env, log)
    try:
        local.wait_healthy(web_port, proc, log)
        out = cli(["produce", str(SAMPLE_TRACE)], env)
        assert out.returncode == 0, out.stderr
        assert "produced 16 records" in out.stdout
        settings = Settings(broker=f"kafka://{bootstrap}", **names, **security)
        records = asyncio.run(local.read_topics(
            bootstrap, [settings.topic_decisions, settings.topic_revocations],
            lambda rs: sum(r.topic == settings.topic_decisions for r in rs) >= 16
            and any(r.topic == settings.topic_revocations for r in rs),
            timeout=90, settings=settings))
    finally:
        local.stop_worker(proc)
    assert len(local.values(records, settings.topic_decisions)) == 16
    commands = local.values(records, settings.topic_revocations)
    assert [c["task_id"] for c in commands] == ["task-hijack-1"]
    verifier = Verifier.for_keys([load_public_key(signing_keys[1])],
                                 clock=lambda: commands[0]["issued_at"])
    assert verifier.verify(commands[0]).accepted
    # A plaintext reader of the same port gets nothing: the broker closes its connection.
    with pytest.raises(KafkaConnectionError):
        asyncio.run(local.read_topics(bootstrap, [settings.topic_decisions],
                                      lambda rs: bool(rs), timeout=10))


def failing(args: list[str], env: dict) -> str:
    """Run a command that must fail with exit code 1 (not hang); its stderr."""
    out = cli(args, env)
    assert out.returncode == 1, (out.returncode, out.stdout[-2000:], out.stderr[-3000:])
    return out.stderr


@pytest.mark.kafka
@pytest.mark.parametrize("command", [["produce", str(SAMPLE_TRACE)], ["worker"]])
def test_a_wrong_password_is_named_and_the_command_exits_1(secure_kafka, tmp_path, command):
    bootstrap, security, _ = secure_kafka
    env = local.worker_env(bootstrap, **topics("badpw"), **dict(security,
                           sasl_password="not-the-password"), web_port=local.free_port(),
                           data_dir=tmp_path / "data")
    err = failing(command, env)
    assert "SASL SCRAM-SHA-512 authentication as 'intentwatch' failed" in err
    assert "not-the-password" not in err and security["sasl_password"] not in err


@pytest.mark.kafka
def test_a_missing_or_wrong_ca_is_named_and_the_command_exits_1(secure_kafka, tmp_path):
    bootstrap, security, _ = secure_kafka
    other = tmp_path / "other-ca"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=not the broker's CA", "-keyout", str(other.with_suffix(".key")),
                    "-out", str(other.with_suffix(".pem"))], check=True, capture_output=True)
    for cafile, shown in (("", "(system CAs)"), (str(other.with_suffix(".pem")),
                                                 str(other.with_suffix(".pem")))):
        env = local.worker_env(bootstrap, **topics("badca"), **dict(security, ssl_cafile=cafile))
        if not cafile:
            env.pop("INTENTWATCH_SSL_CAFILE")
        err = failing(["produce", str(SAMPLE_TRACE)], env)
        assert "the broker's TLS certificate is not trusted" in err, err
        assert f"ssl_cafile = {shown}" in err
    env = local.worker_env(bootstrap, **dict(security, ssl_cafile=tmp_path / "absent.pem"))
    out = cli(["produce", str(SAMPLE_TRACE)], env)
    assert out.returncode == 2 and "INTENTWATCH_SSL_CAFILE" in out.stderr
    assert "no such file" in out.stderr


@pytest.mark.kafka
def test_a_plaintext_client_of_the_secure_port_is_told_to_set_the_protocol(secure_kafka):
    bootstrap, _, _ = secure_kafka
    err = failing(["produce", str(SAMPLE_TRACE)], local.worker_env(bootstrap, **topics("pt")))
    assert f"{bootstrap} over PLAINTEXT" in err and "set security_protocol" in err

