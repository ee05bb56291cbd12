"""Local running parts, shared by the demo and the test suite: the Kafka broker from
deploy/kafka/kafka-local.sh, a worker process, and readers of the output topics."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer

ROOT = Path(__file__).resolve().parents[1]
KAFKA_SCRIPT = ROOT / "deploy" / "kafka" / "kafka-local.sh"


def have_java_and_maven() -> str | None:
    """None when the local broker can be built, else what is missing."""
    missing = [tool for tool in ("java", "mvn") if shutil.which(tool) is None]
    return ", ".join(missing) or None


def start_broker(state_dir: Path, secure: bool = False) -> str:
    """Start the local broker; return its bootstrap address host:port. `secure`: its one
    client listener is SASL_SSL with SCRAM-SHA-512 (see secure_client_settings)."""
    env = dict(os.environ, KAFKA_SECURITY="scram-tls" if secure else "plaintext")
    out = subprocess.run([str(KAFKA_SCRIPT), "start", str(state_dir)], check=True,
                         capture_output=True, text=True, env=env)
    return out.stdout.strip().splitlines()[-1]


def restart_broker(state_dir: Path) -> str:
    """Stop the broker started in state_dir and start it again with its data, on the same
    ports; return its bootstrap address (unchanged)."""
    out = subprocess.run([str(KAFKA_SCRIPT), "restart", str(state_dir)], check=True,
                         capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


def secure_client_settings(state_dir: Path) -> dict:
    """The settings a client needs for a broker started with secure=True (the CA and the
    SCRAM user the script generated into STATE_DIR/secure)."""
    secure = Path(state_dir) / "secure"
    return {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": (secure / "username").read_text().strip(),
            "sasl_password": (secure / "password").read_text().strip(),
            "ssl_cafile": str(secure / "ca.pem")}


def stop_broker(state_dir: Path) -> None:
    subprocess.run([str(KAFKA_SCRIPT), "stop", str(state_dir)], check=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_env(bootstrap: str, **settings) -> dict:
    """Environment for an `intentwatch worker` process (INTENTWATCH_* variables)."""
    env = dict(os.environ)
    env["INTENTWATCH_BROKER"] = f"kafka://{bootstrap}"
    for name, value in settings.items():
        env["INTENTWATCH_" + name.upper()] = str(value)
    return env


def start_worker(env: dict, log_path: Path, command: tuple[str, ...] = ("worker",)
                 ) -> subprocess.Popen:
    """An `intentwatch <command>` process (by default the worker), its output in log_path."""
    with open(log_path, "ab") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-m", "streams.cli", *command], env=env,
                                cwd=str(ROOT), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


def wait_healthy(web_port: int, proc: subprocess.Popen, log_path: Path,
                 timeout: float = 90.0) -> None:
    """Wait until the worker's web server answers /healthz; fail early if it exits."""
    url = f"http://127.0.0.1:{web_port}/healthz"
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-3000:] if log_path.exists() else ""
            raise RuntimeError(f"worker exited with code {proc.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer within {timeout:.0f} s") from None
            time.sleep(0.3)


def stop_worker(proc: subprocess.Popen, timeout: float = 30.0) -> int:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


async def read_topics(bootstrap: str, topics: list[str], until, timeout: float = 60.0,
                      on_record=None, settings=None) -> list:
    """Read records of `topics` from the beginning until `until(records)` is true or the
    timeout passes. Records are aiokafka ConsumerRecords. `settings`: read with their
    security options (streams.kafka_security) instead of plaintext from `bootstrap`."""
    from .kafka_security import kafka_client_options

    client = kafka_client_options(settings) if settings else {"bootstrap_servers": bootstrap}
    # No group: every partition is assigned, and read from the beginning.
    consumer = AIOKafkaConsumer(*topics, **client, enable_auto_commit=False,
                                auto_offset_reset="earliest", group_id=None,
                                metadata_max_age_ms=1000)
    await consumer.start()
    records: list = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for recs in batch.values():
                for r in recs:
                    records.append(r)
                    if on_record is not None:
                        on_record(r)
            if until(records):
                break
    finally:
        await consumer.stop()
    return records


def values(records, topic: str | None = None) -> list[dict]:
    return [orjson.loads(r.value) for r in records if topic is None or r.topic == topic]
