"""Shared fixtures. Integration tests run against a real Apache Kafka broker started once per
session by deploy/kafka/kafka-local.sh (assembled from Maven Central, cached)."""

from __future__ import annotations

import itertools
import time
import urllib.request
from pathlib import Path

import pytest

from monitor.config import Settings
from streams import local

SAMPLE_TRACE = local.ROOT / "monitor" / "data" / "sample_trace.jsonl"
SAMPLE_CATALOG = local.ROOT / "monitor" / "data" / "sample_catalog.json"
_ids = itertools.count(1)


@pytest.fixture(scope="session")
def kafka(tmp_path_factory) -> str:
    """Bootstrap address of the session's broker."""
    missing = local.have_java_and_maven()
    if missing:
        pytest.fail(f"integration tests need Java and Maven for the local Kafka broker: "
                    f"{missing} not found")
    state = tmp_path_factory.mktemp("kafka")
    bootstrap = local.start_broker(state)
    yield bootstrap
    local.stop_broker(state)


@pytest.fixture(scope="session")
def signing_keys(tmp_path_factory) -> tuple[Path, Path]:
    """(private, public) PEM files of the Ed25519 key the test workers sign commands with."""
    from monitor.signing import generate_key_pair

    folder = tmp_path_factory.mktemp("keys")
    private, public = generate_key_pair()
    (folder / "signing.pem").write_bytes(private)
    (folder / "signing.pub.pem").write_bytes(public)
    return folder / "signing.pem", folder / "signing.pub.pem"


class RunningWorker:
    def __init__(self, bootstrap: str, settings: Settings, proc, web_port: int, log: Path):
        self.bootstrap, self.settings, self.proc = bootstrap, settings, proc
        self.web_port, self.log = web_port, log

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}{path}", timeout=5) as r:
            return r.read()


@pytest.fixture
def start_worker(kafka, tmp_path, signing_keys):
    """Start `intentwatch worker` processes on fresh topics; stops them after the test."""
    procs = []

    def start(prefix: str | None = None, **overrides) -> RunningWorker:
        prefix = prefix or f"t{next(_ids)}-{int(time.time() * 1000) % 10**8}"
        names = {f"topic_{k}": f"{prefix}.{k}" for k in
                 ("intents", "actions", "decisions", "alerts", "revocations", "dead_letters",
                  "acks")}
        values = dict(names, app_id=f"iw-{prefix}", fast_rebalance=1, catalog=SAMPLE_CATALOG,
                      web_port=local.free_port(), data_dir=tmp_path / f"data-{prefix}",
                      signing_key=signing_keys[0])
        values.update(overrides)
        env = local.worker_env(kafka, **values)
        log = tmp_path / f"worker-{prefix}.log"
        proc = local.start_worker(env, log)
        procs.append(proc)
        settings = Settings(broker=f"kafka://{kafka}", app_id=values["app_id"], **{
            k: v for k, v in values.items() if k.startswith("topic_")})
        worker = RunningWorker(kafka, settings, proc, int(values["web_port"]), log)
        local.wait_healthy(worker.web_port, proc, log)
        return worker

    yield start
    for proc in procs:
        local.stop_worker(proc)
