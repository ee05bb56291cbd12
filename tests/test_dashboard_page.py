"""The worker's dashboard in headless Chromium (Debian's package), against a live worker on the
real broker fed a trace: what the rendered page shows, and that hostile data stays text.
Screenshots are kept in out/test-artifacts/dashboard/."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import orjson
import pytest

from monitor.replay import read_lines
from streams import local
from streams.produce import produce

from .conftest import SAMPLE_TRACE

pytestmark = pytest.mark.kafka

ARTIFACTS = local.ROOT / "out" / "test-artifacts" / "dashboard"
CHROMIUM = "/usr/bin/chromium"
TOKEN = "dash-token-for-the-page-test"


def api_get(worker, path: str, token: str | None = TOKEN) -> bytes:
    """GET one of the dashboard's JSON endpoints, with the token as a Bearer header."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    request = urllib.request.Request(f"http://127.0.0.1:{worker.web_port}{path}",
                                     headers=headers)
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.read()


# -- the rendered DOM, as a small tree -----------------------------------------------------
class Node:
    def __init__(self, tag: str, attrs: dict):
        self.tag, self.attrs, self.children = tag, attrs, []

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def iter(self):
        yield self
        for c in self.children:
            if isinstance(c, Node):
                yield from c.iter()

    def find_all(self, tag: str | None = None, **attrs) -> list[Node]:
        """Elements by tag and attributes: data_task="t" (exact), class_="a b" (has classes a
        and b)."""
        wanted = {k.rstrip("_").replace("_", "-"): v for k, v in attrs.items()}

        def matches(n: Node, name: str, value: str) -> bool:
            if name == "class":
                return set(value.split()) <= set(n.attrs.get("class", "").split())
            return n.attrs.get(name) == value
        return [n for n in self.iter() if (tag is None or n.tag == tag)
                and all(matches(n, k, v) for k, v in wanted.items())]

    def find(self, tag: str | None = None, **attrs) -> Node:
        found = self.find_all(tag, **attrs)
        assert found, f"no <{tag or '*'}> with {attrs} in the page"
        return found[0]


class TreeBuilder(HTMLParser):
    VOID = frozenset({"meta", "link", "br", "img", "input", "hr", "source", "area", "base", "col", "wbr"})

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in self.VOID:
            self.stack.append(node)

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data):
        self.stack[-1].children.append(data)


def parse(html: str) -> Node:
    builder = TreeBuilder()
    builder.feed(html)
    return builder.root


# -- headless Chromium -------------------------------------------------------------------
def chromium(url: str, name: str, tmp_path: Path) -> Node:
    """Render `url` in headless Chromium: the DOM after the page's script ran (several polls
    of virtual time), and a screenshot kept as out/test-artifacts/dashboard/<name>.png."""
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"the dashboard test needs Debian's chromium at {CHROMIUM}")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / f"{name}.png"
    shot.unlink(missing_ok=True)

    def run(*args: str) -> subprocess.CompletedProcess:
        profile = tempfile.mkdtemp(prefix="chromium-", dir=tmp_path)  # (profiles lock)
        return subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-extensions", "--hide-scrollbars", f"--user-data-dir={profile}",
             "--window-size=1400,1100", "--virtual-time-budget=7000", *args, url],
            check=False, capture_output=True, text=True, timeout=180)

    dumped = run("--dump-dom")
    assert dumped.returncode == 0 and "<html" in dumped.stdout, dumped.stderr[-3000:]
    taken = run(f"--screenshot={shot}")
    assert taken.returncode == 0 and shot.exists(), taken.stderr[-3000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"dashboard screenshot: {shot}")
    return parse(dumped.stdout)


def rendered(dom: Node) -> None:
    """The page's script ran, reached the worker, and rendered at least once."""
    body = dom.find("body")
    assert int(body.attrs["data-polls"]) >= 1, dom.find(id="status").text()
    assert "error" not in dom.find(id="status").attrs.get("class", "")
    assert body.attrs["data-auth"] == "ok"


def read_until(worker, until, timeout=60.0):
    s = worker.settings
    return asyncio.run(local.read_topics(
        worker.bootstrap, [s.topic_decisions, s.topic_revocations], until, timeout))


def decided(worker, n_decisions: int, n_commands: int) -> list:
    """Wait until the worker has published that many decisions and revoke commands (the
    dashboard's recorder is fed before the batch's outputs are sent)."""
    s = worker.settings
    return read_until(worker, lambda rs: sum(r.topic == s.topic_decisions for r in rs)
                      >= n_decisions and sum(r.topic == s.topic_revocations for r in rs)
                      >= n_commands)


def test_dashboard_shows_the_hijacked_and_the_benign_task(start_worker, tmp_path):
    worker = start_worker(dashboard_token=TOKEN)
    asyncio.run(produce(read_lines(SAMPLE_TRACE), worker.settings))
    records = decided(worker, 16, 1)
    command = local.values(records, worker.settings.topic_revocations)[0]
    base = f"http://127.0.0.1:{worker.web_port}/dashboard"

    dom = chromium(f"{base}#token={TOKEN}", "overview", tmp_path)
    rendered(dom)
    rows = {r.attrs["data-task"]: r for r in dom.find("table", id="tasks").find_all("tr")
            if "data-task" in r.attrs}
    assert set(rows) == {"task-hijack-1", "task-benign-1"}
    hijack, benign = rows["task-hijack-1"], rows["task-benign-1"]
    order = [r.attrs["data-task"] for r in dom.find("table", id="tasks").find_all("tr")
             if "data-task" in r.attrs]
    assert order == ["task-hijack-1", "task-benign-1"]           # the riskiest first
    assert hijack.attrs["data-verdict"] == "revoke" and "v-revoke" in hijack.attrs["class"]
    assert hijack.find(class_="badge revoke").text() == "revoke"
    assert hijack.find(class_="risk").text() == "1.00"
    assert "Find three hotels in Paris" in hijack.find(class_="goal").text()
    assert hijack.find(class_="state").text() == "ended · revoked"
    assert benign.attrs["data-verdict"] == "allow"
    assert benign.find(class_="badge allow").text() == "allow"
    assert benign.find(class_="risk").text() == "0.00"
    assert benign.find(class_="state").text() == "ended"

    alerts = dom.find("ol", id="alerts").find_all("li")
    assert alerts and {a.attrs["data-task"] for a in alerts} == {"task-hijack-1"}
    revocation = [a for a in alerts if a.find_all(class_="command")]
    assert len(revocation) == 1
    assert command["command_id"] in revocation[0].text()
    assert "send_money (requested)" in revocation[0].text()
    assert "partitions" in dom.find(id="partitions").text()

    dom = chromium(f"{base}?task=task-hijack-1#token={TOKEN}", "hijacked-task-timeline",
                   tmp_path)
    rendered(dom)
    assert dom.find(id="timeline-title").text() == "Timeline of task-hijack-1"
    entries = dom.find("ol", id="timeline-entries").find_all("li")
    actions = [e.find(class_="what").text() for e in entries]
    assert actions[:2] == ["task.intent", "search_hotels (requested)"]
    assert "send_money (requested)" in actions and "get_webpage (completed)" in actions
    revoking = next(e for e in entries if e.find_all(class_="command"))
    assert revoking.find(class_="what").text() == "send_money (requested)"
    assert revoking.attrs["data-verdict"] == "revoke"
    assert revoking.find(class_="command").attrs["data-command-id"] == command["command_id"]
    assert command["command_id"] in revoking.find(class_="command-id").text()
    reasons = revoking.text()
    assert "credential_binding/credential_not_issued_to_task" in reasons
    assert "credential 'cred-finance-7' was not issued to this task" in reasons
    evidence = [e.text() for e in revoking.find_all("pre", class_="evidence")]
    assert any('"credential_id":"cred-finance-7"' in e for e in evidence)

    # The endpoints behind it: the page's policy, the riskiest first, unknown tasks 404.
    with urllib.request.urlopen(base, timeout=10) as page:
        assert "script-src 'sha256-" in page.headers["Content-Security-Policy"]
    tasks = orjson.loads(api_get(worker, "/api/tasks?limit=1"))["tasks"]
    assert [t["task_id"] for t in tasks] == ["task-hijack-1"]
    with pytest.raises(urllib.error.HTTPError) as missing:
        api_get(worker, "/api/tasks/no-such-task")
    assert missing.value.code == 404


def refused(worker, path: str, token: str | None) -> urllib.error.HTTPError:
    with pytest.raises(urllib.error.HTTPError) as refusal:
        api_get(worker, path, token)
    return refusal.value


def test_data_endpoints_refuse_without_the_token_and_the_page_asks_for_it(start_worker,
                                                                          tmp_path):
    worker = start_worker(dashboard_token=TOKEN)
    asyncio.run(produce(read_lines(SAMPLE_TRACE), worker.settings))
    decided(worker, 16, 1)
    assert orjson.loads(api_get(worker, "/api/tasks"))["tasks"]   # the data is there
    for path in ("/api/tasks", "/api/alerts", "/api/tasks/task-hijack-1"):
        for token in (None, "wrong-token", TOKEN + "x", ""):
            refusal = refused(worker, path, token)
            assert refusal.code == 401, (path, token)
            assert refusal.headers["WWW-Authenticate"].startswith("Bearer")
            body = orjson.loads(refusal.read())
            assert body["error"] == "unauthorized" and "task-hijack-1" not in str(body)
    # Probes and metrics stay open: Prometheus and Kubernetes carry no token.
    for path in ("/metrics", "/healthz", "/dashboard"):
        assert worker.get(path)

    base = f"http://127.0.0.1:{worker.web_port}/dashboard"
    for name, url in (("no-token", base), ("wrong-token", f"{base}#token=wrong-token")):
        dom = chromium(url, name, tmp_path)
        body = dom.find("body")
        assert body.attrs["data-auth"] == "required", name
        assert body.attrs["data-polls"] == "0"
        status = dom.find(id="status")
        assert "error" in status.attrs["class"] and status.text().startswith("token required")
        assert "hidden" not in dom.find("form", id="login").attrs
        assert not dom.find("table", id="tasks").find_all("tr", data_task="task-hijack-1")
        assert "task-hijack-1" not in dom.find("html").text()


def test_without_a_configured_token_the_data_endpoints_refuse_all(start_worker):
    worker = start_worker()   # no dashboard token
    for token in (None, "anything", ""):
        assert refused(worker, "/api/tasks", token).code == 401


HOSTILE_GOAL = ("<script>document.documentElement.dataset.pwned='script'</script>"
                "<img src=x onerror=\"document.documentElement.dataset.pwned='goal'\">")
HOSTILE_TOOL = "<img src=x onerror=\"document.documentElement.dataset.pwned='tool'\">"
HOSTILE_ARG = "<img src=x onerror=\"document.documentElement.dataset.pwned='arg'\">@evil.example"


def hostile_trace(task_id: str) -> list[tuple[int, bytes]]:
    events = [
        {"v": 1, "type": "task.intent", "task_id": task_id, "agent_id": "agent-x",
         "workload_id": "spiffe://acme.example/agents/x", "goal": HOSTILE_GOAL,
         "tools": ["read_inbox", "send_email"], "scopes": {"to": ["*@acme.example"]},
         "credentials": ["cred-x"], "event_time": 1767225600.0},
        {"v": 1, "type": "agent.action", "task_id": task_id, "agent_id": "agent-x",
         "tool": "send_email", "args": {"to": HOSTILE_ARG, "body": "hi"},
         "credential_id": "cred-x", "event_id": "h-1", "event_time": 1767225601.0,
         "phase": "requested"},
        {"v": 1, "type": "agent.action", "task_id": task_id, "agent_id": "agent-x",
         "tool": HOSTILE_TOOL, "args": {}, "credential_id": "cred-x", "event_id": "h-2",
         "event_time": 1767225602.0, "phase": "requested"},
    ]
    return [(n, orjson.dumps(e)) for n, e in enumerate(events, 1)]  # (as read_lines gives)


def test_hostile_goal_tool_and_arguments_are_shown_as_text(start_worker, tmp_path):
    worker = start_worker(dashboard_token=TOKEN)
    task_id = "task-<b>bold</b>"   # markup and a slash in the id too
    asyncio.run(produce(hostile_trace(task_id), worker.settings))
    decided(worker, 3, 1)
    query = urllib.parse.quote(task_id, safe="")
    dom = chromium(f"http://127.0.0.1:{worker.web_port}/dashboard?task={query}#token={TOKEN}",
                   "hostile", tmp_path)
    rendered(dom)
    html = dom.find("html")
    assert "data-pwned" not in html.attrs                   # no handler or script ran
    assert not dom.find_all("img") and not dom.find_all("b")  # nothing parsed as HTML
    assert len(dom.find_all("script")) == 1                  # only the page's own
    row = dom.find("tr", data_task=task_id)
    assert row.find(class_="task-id").text() == task_id
    assert row.find(class_="goal").text() == HOSTILE_GOAL
    assert row.attrs["data-verdict"] == "revoke"
    timeline = dom.find("ol", id="timeline-entries").text()
    assert HOSTILE_TOOL + " (requested)" in timeline
    evidence = " ".join(e.text() for e in dom.find_all("pre", class_="evidence"))
    assert orjson.dumps(HOSTILE_ARG).decode()[1:-1] in evidence   # the arg, as JSON text
    assert dom.find(id="timeline-title").text() == f"Timeline of {task_id}"
