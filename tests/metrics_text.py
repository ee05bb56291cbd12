"""One series' values from a worker's /metrics text (Prometheus' text format), for tests and
benchmarks: parsed by prometheus-client, not matched line by line."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def scrape(web_port: int, timeout: float = 10.0) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/metrics", timeout=timeout) as r:
        return r.read().decode()


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """(labels, value) of every sample named `name` (a counter's `..._total`, a histogram's
    `..._count`)."""
    return [(s.labels, s.value) for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == name]


def value(text: str, name: str, **labels: str) -> float:
    """The sum of `name`'s samples that carry `labels` (0.0 when there is none yet)."""
    return sum((v for have, v in samples(text, name)
                if all(have.get(k) == want for k, want in labels.items())), 0.0)
