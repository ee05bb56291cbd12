"""Hostile input at a real worker on the real broker: bodies at POST /v1/decide, paths and
query strings at the dashboard's endpoints, and records on the input topics.

The hostile records are a fixed corpus drawn (seeded) from benchmarks.hostile, the generators
of the property tests and of the soak: a few hundred cases, every kind several times.
"""

from __future__ import annotations

import asyncio
import http.client
import random
import re
from collections import Counter

import orjson

from benchmarks.hostile import BAD_KEYS, KEY_MISMATCH, KINDS, hostile_record
from monitor.catalog import Catalog
from monitor.engine import _decision_id
from monitor.pipeline import Pipeline
from monitor.profiles import build_engine
from streams import local
from streams.decide import DECIDE_PATH
from streams.produce import route

from .conftest import SAMPLE_CATALOG, SAMPLE_TRACE

TOKEN = "test-hostile-token-8c1e"
GOOD = [orjson.loads(line) for line in SAMPLE_TRACE.read_bytes().splitlines() if line.strip()]
PER_KIND = 12


def corpus(seed: int = 11) -> list[tuple[str, bytes | None, bytes | None, str]]:
    """(kind, value, key, expected reason): every kind PER_KIND times, and a good value under
    each bad key."""
    rng = random.Random(seed)
    out = [hostile_record(rng, GOOD[i % len(GOOD)], kind)
           for kind in sorted(KINDS) for i in range(PER_KIND)]
    out += [(KEY_MISMATCH, orjson.dumps(GOOD[i]), key, KEY_MISMATCH)
            for i, key in enumerate(BAD_KEYS)]
    return out


def request(port: int, method: str, path: str, body: bytes | None = None,
            headers: dict | None = None) -> tuple[int, bytes]:
    """One request on a fresh connection; a hang fails the test by the timeout."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_hostile_http_requests_get_a_clear_4xx_never_a_5xx(start_worker):
    worker = start_worker(decide_token=TOKEN)
    port = worker.web_port
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    bodies = [(value if value is not None else b"", reason if value is not None else "not_json")
              for kind, value, _, reason in corpus() if kind != KEY_MISMATCH]
    completed = next(e for e in GOOD if e.get("phase") == "completed")
    intent = next(e for e in GOOD if e["type"] == "task.intent")
    bodies += [(orjson.dumps(completed), "not_a_request"), (orjson.dumps(intent), "not_an_action")]
    for body, reason in bodies:
        status, raw = request(port, "POST", DECIDE_PATH, body, auth)
        assert status == 400, (status, body[:80])
        answer = orjson.loads(raw)
        assert answer["error"] == reason and answer["reason"], (answer, body[:80])
        # without the token, or with a hostile one: refused before the body is read
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic " + TOKEN},
                    {"Authorization": "Bearer " + "x" * 4000}, {"Authorization": "Bearer"},
                    {"Authorization": "Bearer \u00ff\u00fe".encode("latin-1").decode("latin-1")}):
        for body, _ in bodies[::10]:
            status, raw = request(port, "POST", DECIDE_PATH, body, headers)
            assert status == 401 and orjson.loads(raw)["error"] == "unauthorized", headers

    paths = ["/api/tasks?limit=-1", "/api/tasks?limit=0", "/api/tasks?limit=abc",
             "/api/tasks?limit=%C2%B2", "/api/tasks?limit=" + "9" * 5000,
             "/api/tasks?limit=99999999999999999999", "/api/tasks?limit=%00",
             "/api/tasks?limit=1&limit=2", "/api/alerts?limit=%ff%fe", "/api/alerts?%%%",
             "/api/tasks/%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/api/tasks/" + "a" * 8000,
             "/api/tasks/%ff%fe", "/api/tasks/%00", "/api/tasks/%F0%9F%92%A3",
             "/api/tasks/<script>alert(1)</script>", "/dashboard?x=<script>",
             "/dashboard/../metrics", "/api/tasks/a/b/c", "/healthz?%ff", "/metrics?x=%00"]
    for path in paths:
        status, raw = request(port, "GET", path)
        assert status < 500, (status, path[:80], raw[:200])
        if status == 200 and path.startswith("/api/"):
            orjson.loads(raw)  # a JSON answer, not a page of error text
    for method in ("PUT", "DELETE", "PATCH"):
        assert request(port, method, DECIDE_PATH, b"{}", auth)[0] < 500
    assert request(port, "GET", "/healthz")[0] == 200
    assert worker.proc.poll() is None


def _dead_letters_metric(worker) -> Counter:
    text = worker.get("/metrics").decode()
    pattern = r'^intentwatch_dead_letters_total\{reason="([^"]+)"\} (\S+)$'
    return Counter({m.group(1): int(float(m.group(2)))
                    for m in re.finditer(pattern, text, re.MULTILINE)})


def test_hostile_records_on_the_input_topics_are_dead_lettered_and_the_good_still_decided(
        start_worker):
    worker = start_worker()
    s = worker.settings
    hostile = corpus()
    rng = random.Random(5)
    records = []  # (topic, key, value): the good trace in order, hostile records between
    slots = [[] for _ in GOOD]
    for item in hostile:
        slots[rng.randrange(len(GOOD))].append(item)
    inputs = (s.topic_intents, s.topic_actions)
    for event, extra in zip(GOOD, slots, strict=True):
        raw = orjson.dumps(event)
        records.append((*route(raw, s), raw))
        records += [(rng.choice(inputs), key, value) for _, value, key, _ in extra]

    async def send() -> None:
        from aiokafka import AIOKafkaProducer
        producer = AIOKafkaProducer(bootstrap_servers=worker.bootstrap,
                                    max_request_size=2 * 1024 * 1024)
        await producer.start()
        try:
            await asyncio.gather(*[await producer.send(t, v, key=k) for t, k, v in records])
        finally:
            await producer.stop()
    asyncio.run(send())

    def done(rs) -> bool:
        return (sum(r.topic == s.topic_dead_letters for r in rs) >= len(hostile)
                and sum(r.topic == s.topic_decisions for r in rs) >= len(GOOD))
    out = asyncio.run(local.read_topics(worker.bootstrap, [s.topic_decisions,
                                                           s.topic_dead_letters], done, 120))

    # every hostile record: on the dead letters, original bytes, its reason in the header
    got = Counter((r.value, dict(r.headers)["x-deadletter-reason"].decode())
                  for r in out if r.topic == s.topic_dead_letters)
    assert got == Counter((value, reason) for _, value, _, reason in hostile)
    assert _dead_letters_metric(worker) == Counter(reason for *_, reason in hostile)

    # the good events: decided exactly as the same engine decides them alone (replay)
    pipeline = Pipeline(build_engine("full", Catalog.load(SAMPLE_CATALOG)))
    alone = {d["decision_id"]: d["verdict"] for e in GOOD
             for d in pipeline.handle(orjson.dumps(e))[0]}
    decided = [orjson.loads(r.value) for r in out if r.topic == s.topic_decisions]
    assert {d["decision_id"]: d["verdict"] for d in decided} == alone
    assert len(decided) == len(GOOD) == len({_decision_id(e) for e in GOOD})
    assert worker.proc.poll() is None
    assert orjson.loads(worker.get("/healthz"))["status"] == "ok"


def test_hostile_gateway_requests_get_a_4xx_never_a_5xx(start_worker, signing_keys):
    """The reference gateway's HTTP API (POST /tasks, /tasks/{id}/calls, /tasks/{id}/end) on
    the real broker, with a real worker behind its /v1/decide."""
    import dataclasses
    import uuid

    from aiohttp.test_utils import TestClient, TestServer

    from streams.gateway import Gateway, build_web_app

    worker = start_worker(decide_token=TOKEN)
    s = dataclasses.replace(worker.settings, catalog=str(SAMPLE_CATALOG), fast_rebalance=True,
                            verify_keys=str(signing_keys[1]), app_id=f"gw-{uuid.uuid4().hex}")
    mail = {"agent_id": "a", "workload_id": "spiffe://example.org/a", "goal": "g",
            "tools": ["read_inbox"]}
    rng = random.Random(3)
    values = [None, 1, -1.5, 1e308, "", "x" * 10_000, [], {}, ["\u0000"], {"a": [1]}, True]
    task_bodies = [b"", b"[]", b"\xff\xfe", b"[" * 5000, b"{\"a\":1", b"null", b"1e999"]
    task_bodies += [orjson.dumps({**mail, field: value}) for field in
                    ("agent_id", "workload_id", "goal", "tools", "task_id", "ttl", "scopes",
                     "max_actions", "parent_task_id", "unknown") for value in values]
    task_bodies += [orjson.dumps({k: v for k, v in mail.items() if k != drop}) for drop in mail]
    call_bodies = [b"", b"{}", b"[1]", b"\xc3\x28", orjson.dumps({"tool": 1}),
                   orjson.dumps({"tool": "t", "args": []}), orjson.dumps({"tool": "t" * 70_000}),
                   orjson.dumps({"tool": "read_inbox", "args": {"a": "\ud7ff" * 1000}})]

    async def scenario() -> Counter:
        statuses: Counter = Counter()
        async with Gateway(s, decide_url=f"http://127.0.0.1:{worker.web_port}{DECIDE_PATH}",
                           decide_token=TOKEN, decide_timeout=5.0) as gw:
            client = TestClient(TestServer(build_web_app(gw)))
            await client.start_server()
            try:
                for body in task_bodies:
                    resp = await client.post("/tasks", data=body)
                    statuses[resp.status] += 1
                    assert resp.status < 500, (resp.status, body[:80], await resp.text())
                task = await (await client.post("/tasks", data=orjson.dumps(mail))).json()
                tid, token = task["task_id"], task["token"]
                for body in call_bodies:
                    for task_id, bearer in ((tid, token), (tid, "wrong"), ("%ff" * 50, token),
                                            (tid, "\xff\xfe"),  # (sent as bytes ff fe)
                                            (tid, "x" * rng.randrange(1, 5000))):
                        resp = await client.post(f"/tasks/{task_id}/calls", data=body,
                                                 headers={"Authorization": f"Bearer {bearer}"})
                        statuses[resp.status] += 1
                        assert resp.status < 500, (resp.status, body[:80], await resp.text())
                for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": "Basic x"},
                                {"Authorization": f"Bearer {token}"}):
                    resp = await client.post(f"/tasks/{tid}x/end", headers=headers)
                    assert 400 <= resp.status < 500
                resp = await client.post(f"/tasks/{tid}/end",
                                         headers={"Authorization": f"Bearer {token}"})
                assert resp.status == 200
            finally:
                await client.close()
        return statuses
    statuses = asyncio.run(scenario())
    assert statuses[400] > len(task_bodies) // 2  # most were refused as bad requests
    assert worker.proc.poll() is None
