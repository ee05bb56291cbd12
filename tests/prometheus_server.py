"""A real Prometheus (Debian's /usr/bin/prometheus) for the tests: started on a free port with
a temporary configuration and storage, queried through its HTTP API, stopped after."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from streams import local

RULES = local.ROOT / "deploy" / "prometheus" / "rules.yml"


def binary(name: str) -> str:
    """Path of a Prometheus tool; fails (never skips) when it is missing: CI installs it."""
    path = shutil.which(name)
    assert path, f"{name} not found: install Debian's prometheus package (apt-get install " \
                 f"prometheus)"
    return path


class Prometheus:
    def __init__(self, folder: Path, targets: list[str], interval_ms: int = 1000):
        self.folder, self.port = folder, local.free_port()
        config = {  # JSON is YAML: no YAML writer needed
            "global": {"scrape_interval": f"{interval_ms}ms",
                       "evaluation_interval": f"{interval_ms}ms"},
            "rule_files": [str(RULES)],
            "scrape_configs": [{"job_name": "intentwatch",
                                "static_configs": [{"targets": targets}]}],
        }
        (folder / "prometheus.yml").write_text(json.dumps(config))
        self.log = folder / "prometheus.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> Prometheus:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [binary("prometheus"), f"--config.file={self.folder / 'prometheus.yml'}",
                 f"--storage.tsdb.path={self.folder / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.wait_for(lambda: self._ready(), timeout, "Prometheus did not become ready")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            local.stop_worker(self.proc)  # terminate, wait, kill if it must

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"prometheus exited:\n{self.log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def api(self, path: str, **params) -> dict:
        """The JSON answer of an API call (HTTP errors carry one too: status "error")."""
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as err:
            return json.loads(err.read())

    def query(self, expr: str) -> list[dict]:
        """The result vector of an instant query (fails on a query error)."""
        answer = self.api("query", query=expr)
        assert answer["status"] == "success", (expr, answer)
        return answer["data"]["result"]

    def values(self, expr: str, label: str | None = None) -> dict:
        """{label value (or None): float} of an instant query."""
        return {(s["metric"].get(label) if label else None): float(s["value"][1])
                for s in self.query(expr)}

    @staticmethod
    def wait_for(check, timeout: float, what: str, pause: float = 0.5):
        """Call check() until it returns something true; return that. Generous timeouts:
        waits, not timed assertions."""
        deadline = time.monotonic() + timeout
        while True:
            result = check()
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(what)
            time.sleep(pause)
