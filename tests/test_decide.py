"""POST /v1/decide: inline decisions on the live worker (real broker), and its pure helpers."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request

import orjson
import pytest

from monitor.contracts import ContractError
from monitor.replay import read_lines
from streams import local
from streams.decide import (
    DECIDE_PATH,
    NODE_HEADER,
    authorized,
    parse_proposal,
    with_decision,
)
from streams.produce import produce

from .conftest import SAMPLE_TRACE
from .metrics_text import value

TOKEN = "test-decide-token-3f9a"


def trace() -> list[dict]:
    return [orjson.loads(raw) for _, raw in read_lines(SAMPLE_TRACE)]


def request_of(events: list[dict], task_id: str, tool: str) -> dict:
    return next(e for e in events if e.get("task_id") == task_id and e.get("tool") == tool
                and e.get("phase") == "requested")


def post(port: int, body: bytes, token: str | None = TOKEN) -> tuple[int, dict, dict]:
    """(status, headers, JSON body) of one POST /v1/decide."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(f"http://127.0.0.1:{port}{DECIDE_PATH}", data=body,
                                 headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), orjson.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), orjson.loads(exc.read())


def post_until_decided(port: int, body: bytes, timeout: float = 60.0):
    """POST, retrying while the worker says 503 (partitions still being assigned)."""
    deadline = time.monotonic() + timeout
    while True:
        status, headers, answer = post(port, body)
        if status != 503 or time.monotonic() > deadline:
            return status, headers, answer
        time.sleep(0.3)


def produce_until_send_money(worker) -> list[dict]:
    """Publish the sample trace up to (not including) the hijacked send_money request; wait
    until the worker has decided all of it. Returns the whole trace as dicts."""
    events = trace()
    cut = events.index(request_of(events, "task-hijack-1", "send_money"))
    s = worker.settings
    asyncio.run(produce([(0, orjson.dumps(e)) for e in events[:cut]], s))
    records = asyncio.run(local.read_topics(
        worker.bootstrap, [s.topic_decisions], lambda rs: len(rs) >= cut, timeout=60))
    assert len(records) == cut, f"the worker decided {len(records)} of {cut} events"
    return events


# -- helpers, no broker -----------------------------------------------------------------------

@pytest.mark.parametrize("header, token, ok", [
    (f"Bearer {TOKEN}", TOKEN, True),
    (f"bearer {TOKEN}", TOKEN, True),
    (f"Bearer {TOKEN}x", TOKEN, False),
    (f"Basic {TOKEN}", TOKEN, False),
    (TOKEN, TOKEN, False),
    (None, TOKEN, False),
    ("", TOKEN, False),
    ("Bearer ", "", False),        # no token configured: nothing is authorized
    ("Bearer", "", False),
    ("Bearer caf\u00e9", "caf\u00e9", True),  # non-ASCII tokens compare as bytes
])
def test_bearer_token_check(header, token, ok):
    assert authorized(header, token) is ok


def test_parse_proposal_accepts_requested_actions_only():
    events = trace()
    send = request_of(events, "task-hijack-1", "send_money")
    assert parse_proposal(orjson.dumps(send), 1024 * 1024) == send
    completed = dict(send, phase="completed", status="ok")
    bad = [(b"{not json", "not_json"),
           (b"[1]", "not_object"),
           (orjson.dumps({k: v for k, v in send.items() if k != "tool"}), "missing_field"),
           (orjson.dumps(events[0]), "not_an_action"),  # a task.intent
           (orjson.dumps(completed), "not_a_request"),
           (orjson.dumps(dict(send, args={"pad": "x" * 2000})), "oversize")]
    for raw, code in bad:
        with pytest.raises(ContractError) as exc:
            parse_proposal(raw, 1024)
        assert exc.value.code == code


def test_decision_follows_allowed():
    assert with_decision({"allowed": False, "verdict": "revoke"})["decision"] == "deny"
    assert with_decision({"allowed": True, "verdict": "alert"})["decision"] == "allow"


# -- live worker on the real broker ------------------------------------------------------------

@pytest.mark.kafka
def test_decide_on_live_worker(start_worker):
    worker = start_worker(decide_token=TOKEN)
    events = produce_until_send_money(worker)
    port = worker.web_port
    send_money = request_of(events, "task-hijack-1", "send_money")
    send_email = request_of(events, "task-benign-1", "send_email")

    status, headers, answer = post_until_decided(port, orjson.dumps(send_money))
    assert status == 200, answer
    assert answer["decision"] == "deny"
    assert answer["allowed"] is False and answer["verdict"] == "revoke"
    assert answer["task_id"] == "task-hijack-1" and answer["event_id"] == send_money["event_id"]
    assert {"tool_not_declared", "credential_not_issued_to_task"} <= {
        r["code"] for r in answer["reasons"]}
    assert headers[NODE_HEADER] == f"http://127.0.0.1:{port}"  # one worker: answered locally

    status, _, answer = post(port, orjson.dumps(send_email))
    assert status == 200, answer
    assert answer["decision"] == "allow" and answer["allowed"] is True
    assert answer["verdict"] == "allow" and answer["reasons"] == []

    # Asking changed nothing: deciding again gives the same answer, and no decision, alert or
    # revoke command was published for the proposals.
    assert post(port, orjson.dumps(send_money))[2]["decision"] == "deny"
    s = worker.settings
    published = asyncio.run(local.read_topics(
        worker.bootstrap, [s.topic_decisions, s.topic_revocations], lambda rs: False,
        timeout=2.0))
    assert not [r for r in published if r.topic == s.topic_revocations]
    assert send_money["event_id"] not in {d["event_id"] for d in local.values(published)}

    # Authentication comes first, and a wrong or missing token learns nothing.
    for token in ("wrong-token", None, ""):
        status, headers, answer = post(port, orjson.dumps(send_money), token=token)
        assert status == 401 and answer["error"] == "unauthorized"
        assert headers["WWW-Authenticate"].startswith("Bearer")
        assert "decision" not in answer
    assert post(port, b"{not json", token="wrong-token")[0] == 401

    for body, code in [(b"{not json", "not_json"),
                       (orjson.dumps({k: v for k, v in send_money.items() if k != "args"}),
                        "missing_field"),
                       (orjson.dumps(dict(send_money, phase="completed")), "not_a_request")]:
        status, _, answer = post(port, body)
        assert status == 400 and answer["error"] == code and answer["reason"]

    metrics = worker.get("/metrics").decode()
    assert "intentwatch_inline_decision_seconds_count 3.0" in metrics
    log = worker.log.read_text()
    assert TOKEN not in log and "wrong-token" not in log


@pytest.mark.kafka
def test_decide_without_configured_token_refuses_everything(start_worker):
    worker = start_worker()  # no decide_token
    send_email = request_of(trace(), "task-benign-1", "send_email")
    for token in (TOKEN, "", None):
        assert post(worker.web_port, orjson.dumps(send_email), token=token)[0] == 401


@pytest.mark.kafka
def test_task_without_intent_is_denied_on_a_fresh_worker(start_worker):
    worker = start_worker(decide_token=TOKEN)  # nothing produced: an empty table
    proposal = dict(request_of(trace(), "task-benign-1", "send_email"), task_id="task-unknown")
    status, _, answer = post_until_decided(worker.web_port, orjson.dumps(proposal))
    assert status == 200, answer
    assert answer["decision"] == "deny"
    assert [r["code"] for r in answer["reasons"]] == ["no_intent"]


def changelog_owners(worker) -> dict[str, list[int]]:
    """Worker URL -> partitions of the tasks table it owns, as Faust's router says."""
    routes = orjson.loads(worker.get("/router/tasks/"))
    return {url: sorted(p for parts in topics.values() for p in parts)
            for url, topics in routes.items()}


@pytest.mark.kafka
def test_two_workers_route_each_task_to_its_owner(start_worker, tmp_path):
    prefix = f"route-{tmp_path.name[-12:]}"
    first = start_worker(prefix, decide_token=TOKEN)
    events = produce_until_send_money(first)
    second = start_worker(prefix, decide_token=TOKEN, data_dir=tmp_path / "data-second")
    urls = {f"http://127.0.0.1:{w.web_port}" for w in (first, second)}

    # Wait until both workers agree that each of them owns part of the table.
    deadline = time.monotonic() + 90
    while True:
        owners = [changelog_owners(w) for w in (first, second)]
        if owners[0] == owners[1] and set(owners[0]) == urls and all(owners[0].values()):
            break
        assert time.monotonic() < deadline, f"partitions never spread: {owners}"
        time.sleep(0.5)

    expected = {"task-hijack-1": "deny", "task-benign-1": "allow"}
    tools = {"task-hijack-1": "send_money", "task-benign-1": "send_email"}
    for task_id, decision in expected.items():
        body = orjson.dumps(request_of(events, task_id, tools[task_id]))
        answers = [post_until_decided(w.web_port, body) for w in (first, second)]
        assert [a[0] for a in answers] == [200, 200], answers
        # Whichever worker is asked, the owner of the task's partition answers, the same way.
        deciders = {a[1][NODE_HEADER] for a in answers}
        assert len(deciders) == 1 and deciders <= urls
        assert answers[0][2] == answers[1][2]
        assert answers[0][2]["decision"] == decision

    # Each decision was made once, by the owner: 4 in all, whoever forwarded them.
    counts = [value(w.get("/metrics").decode(), "intentwatch_inline_decision_seconds_count")
              for w in (first, second)]
    assert sum(counts) == 4.0
