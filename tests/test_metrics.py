"""The bulk histogram update gives the same series as one observe() per value."""

import math
import random

from prometheus_client import CollectorRegistry, Histogram

from monitor.metrics import observe_many

BUCKETS = (1e-5, 1e-4, 1e-3, 1e-2, 0.1)


def samples(bulk: bool, values: list[float]) -> dict:
    registry = CollectorRegistry()
    h = Histogram("x_seconds", "x", buckets=BUCKETS, registry=registry)
    if bulk:
        observe_many(h, values)
    else:
        for v in values:
            h.observe(v)
    return {(s.name, s.labels.get("le")): s.value for metric in registry.collect()
            for s in metric.samples if not s.name.endswith("_created")}


def test_observe_many_equals_observe_one_by_one():
    rnd = random.Random(7)
    values = [rnd.choice([0.0, 1e-5, 3e-5, 1e-4, 0.05, 0.1, 2.0, 1e-3]) for _ in range(500)]
    one_by_one, bulk = samples(False, values), samples(True, values)
    total = ("x_seconds_sum", None)
    assert math.isclose(bulk.pop(total), one_by_one.pop(total), rel_tol=1e-12)
    assert bulk == one_by_one
    assert bulk[("x_seconds_bucket", "0.0001")] == sum(v <= 1e-4 for v in values)
