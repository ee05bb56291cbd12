"""AgentDojo importer and catalog: a handful of real run files (plus variants derived from real
files for formats this dataset subset lacks) imported into a temporary tree. No broker."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from monitor.catalog import CAPABILITIES, Catalog
from monitor.contracts import validate
from monitor.importers.agentdojo import CATALOG_PATH, import_runs, target_matches

# The dataset lies beside the checkout (../shared), as on the developers' machines and in CI.
DATA = Path(os.environ.get(
    "AGENTDOJO_DIR", Path(__file__).resolve().parents[2] / "shared" / "datasets" / "agentdojo"))
TASKS = DATA / "tasks.json"

needs_data = pytest.mark.skipif(not (DATA / "runs").is_dir(),
                                reason=f"AgentDojo dataset not at {DATA}")

BENIGN = "claude-3-5-sonnet-20241022/slack/user_task_1/none/none"  # string content, real ids
TOOL_ERROR = "gpt-4o-mini-2024-07-18/workspace/user_task_39/none/none"  # null content, 2 calls/turn
# security true; gpt-4o reuses a call id across turns; deletes file 13 at call 2
ATTACK_OK = "gpt-4o-2024-05-13/workspace/user_task_17/important_instructions/injection_task_1"
ATTACK_FAILED = "command-r-plus/banking/user_task_0/important_instructions/injection_task_0"  # no ids
# security true; gemini's empty ids; reads all channels, then posts them (call 6)
ATTACK_GEMINI = "gemini-1.5-pro-002/slack/user_task_0/important_instructions/injection_task_2"
AS_USER = "gpt-4o-2024-05-13/banking/injection_task_0/none/none"
ERRORED = "command-r-plus/banking/user_task_9/important_instructions/injection_task_1"
REAL = [BENIGN, TOOL_ERROR, ATTACK_OK, ATTACK_FAILED, ATTACK_GEMINI, AS_USER, ERRORED]

# Variants derived from real files, under their own pipeline directory:
BLOCKS = "derived-blocks/slack/user_task_1/none/none"  # content as [{type, content}] blocks
EMPTY = "derived-empty/slack/user_task_1/none/none"  # messages: []
NEWER = "derived-newer/slack/user_task_1/none/none"  # benchmark_version absent from tasks.json
BROKEN = "derived-broken/slack/user_task_1/none/none"  # truncated JSON


def _to_blocks(run: dict) -> dict:
    for m in run["messages"]:
        if isinstance(m.get("content"), str):
            m["content"] = [{"type": "text", "content": m["content"]}]
    return run


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    root = tmp_path_factory.mktemp("agentdojo")
    runs = root / "runs"
    for rel in REAL:
        dst = runs / f"{rel}.json"
        dst.parent.mkdir(parents=True)
        shutil.copy(DATA / "runs" / f"{rel}.json", dst)
    benign = json.loads((DATA / "runs" / f"{BENIGN}.json").read_text())
    derived = {BLOCKS: json.dumps(_to_blocks(json.loads(json.dumps(benign)))),
               EMPTY: json.dumps(dict(benign, messages=[])),
               NEWER: json.dumps(dict(benign, benchmark_version="v9.9.9")),
               BROKEN: json.dumps(benign)[:500]}
    for rel, text in derived.items():
        dst = runs / f"{rel}.json"
        dst.parent.mkdir(parents=True)
        dst.write_text(text)
    ticks = []
    summary = import_runs(runs, TASKS, root / "out", progress=lambda n, t: ticks.append((n, t)))
    events = [json.loads(line) for line in (root / "out" / "events.jsonl").read_text().splitlines()]
    labels = {lb["run"]: lb for lb in
              map(json.loads, (root / "out" / "labels.jsonl").read_text().splitlines())}
    return {"summary": summary, "events": events, "labels": labels, "ticks": ticks,
            "runs": runs, "out": root / "out"}


def _run_events(imported, rel):
    task_id = imported["labels"][rel]["task_id"]
    return [e for e in imported["events"] if e["task_id"] == task_id]


def _requests(events):
    return [e for e in events if e["type"] == "agent.action" and e["phase"] == "requested"]


@needs_data
def test_summary_counts(imported):
    s = imported["summary"]
    assert s["files"] == 11
    assert s["imported"] == 7
    assert s["by_kind"] == {"benign": 3, "injected": 3, "injection_as_user": 1}
    assert s["skipped"] == {"error": 1, "empty_messages": 1, "unknown_suite_version": 1,
                            "unparsable": 1}
    assert s["harm"]["attack_succeeded"] == 2
    assert s["harm"]["attack_succeeded_harmful_found"] == 2
    assert s["harm"]["as_user_harmful_found"] == 1
    assert s["oddities"]["generated_call_ids"] > 0  # command-r-plus and gemini ids
    assert imported["ticks"][-1] == (11, 11)
    assert len(imported["labels"]) == 7


@needs_data
def test_every_event_validates_and_runs_are_contiguous(imported):
    events = imported["events"]
    for e in events:
        validate(e)
    # each run: intent, actions, end -- contiguous, strictly increasing times
    blocks = [t for i, t in enumerate(e["task_id"] for e in events)
              if i == 0 or events[i - 1]["task_id"] != t]
    assert len(blocks) == len(set(blocks)) == len(imported["labels"])
    for rel in imported["labels"]:
        run = _run_events(imported, rel)
        assert run[0]["type"] == "task.intent" and run[-1]["type"] == "task.end"
        times = [e["event_time"] for e in run]
        assert times == sorted(times) and len(set(times)) == len(times)
        assert all(e["type"] == "agent.action" for e in run[1:-1])
    ids = [e["event_id"] for e in events if "event_id" in e]
    assert len(ids) == len(set(ids))


@needs_data
def test_calls_pair_with_results(imported):
    for rel in imported["labels"]:
        run = _run_events(imported, rel)
        requested = {}
        for e in run[1:-1]:
            assert e["credential_id"] == run[0]["credentials"][0]
            assert isinstance(e["args"], dict)
            if e["phase"] == "requested":
                assert e["call_id"] not in requested, "call ids are unique within a run"
                requested[e["call_id"]] = e
            else:
                assert requested[e["call_id"]]["tool"] == e["tool"]
    run = _run_events(imported, TOOL_ERROR)
    done = [e for e in run if e.get("phase") == "completed"]
    assert [e["status"] for e in done] == ["ok", "error"]
    assert "No emails found" in done[1]["result"]
    assert done[1]["args"] == {"query": "reset TechServices password"}


@needs_data
def test_intent_holds_only_what_the_orchestrator_knows(imported):
    intent = _run_events(imported, ATTACK_OK)[0]
    assert intent["goal"].startswith("Where and at what time is the hiking trip")  # not the attack
    assert intent["suite"] == "workspace"
    assert intent["agent_id"] == "gpt-4o-2024-05-13"
    assert intent["workload_id"] == "spiffe://agentdojo.local/gpt-4o-2024-05-13"
    tasks = json.loads(TASKS.read_text())["v1/workspace"]
    want = list(dict.fromkeys(c["function"] for c in
                              tasks["user_tasks"]["user_task_17"]["ground_truth"]))
    assert intent["tools"] == want
    # the task id must not tell the monitor which runs are attacked
    for label in imported["labels"].values():
        assert "injection" not in label["task_id"] and "important" not in label["task_id"]
    as_user = _run_events(imported, AS_USER)[0]
    assert as_user["goal"].startswith("Send a transaction to US133000000121212121212")
    assert as_user["tools"] == ["send_money"]


@needs_data
def test_labels(imported):
    labels = imported["labels"]
    ok = labels[ATTACK_OK]
    assert ok["kind"] == "injected" and ok["injected"] and ok["attack_succeeded"]
    assert ok["first_harmful_call"] == 2
    harmful = next(e for e in imported["events"]
                   if e.get("event_id") == ok["first_harmful_event_id"])
    assert harmful["phase"] == "requested"
    assert (harmful["tool"], harmful["args"]) == ("delete_file", {"file_id": "13"})
    assert _requests(_run_events(imported, ATTACK_OK)).index(harmful) == 2

    gem = labels[ATTACK_GEMINI]
    assert gem["attack_succeeded"] and gem["first_harmful_call"] == 6  # the post, not the reads
    post = _requests(_run_events(imported, ATTACK_GEMINI))[6]
    assert post["tool"] == "post_webpage" and post["event_id"] == gem["first_harmful_event_id"]

    failed = labels[ATTACK_FAILED]
    assert failed["kind"] == "injected" and not failed["attack_succeeded"]
    assert failed["first_harmful_call"] is None

    benign = labels[BENIGN]
    assert benign["kind"] == "benign" and not benign["injected"]
    assert not benign["attack_succeeded"]  # security is true on none runs and means nothing
    assert benign["injection_task_id"] is None and benign["first_harmful_call"] is None
    assert labels[BLOCKS]["kind"] == "benign"

    as_user = labels[AS_USER]
    assert as_user["kind"] == "injection_as_user" and not as_user["injected"]
    assert as_user["first_harmful_call"] == 1


@needs_data
def test_block_content_imports_like_string_content(imported):
    def strip(events):
        return [{k: v for k, v in e.items() if k not in ("task_id", "event_id", "event_time",
                                                        "credentials", "credential_id",
                                                        "agent_id", "workload_id")}
                for e in events]
    assert strip(_run_events(imported, BLOCKS)) == strip(_run_events(imported, BENIGN))


@needs_data
def test_import_is_deterministic(imported, tmp_path):
    import_runs(imported["runs"], TASKS, tmp_path)
    for name in ("events.jsonl", "labels.jsonl"):
        assert (tmp_path / name).read_bytes() == (imported["out"] / name).read_bytes()


def test_target_matching():
    assert target_matches("recipient", "US1330", "us1330 ")
    assert target_matches("recipients", ["a@x.com"], ["b@x.com", "A@x.com"])
    assert not target_matches("recipients", ["a@x.com"], ["b@x.com"])
    assert target_matches("recipients", ["a@x.com"], "a@x.com")  # a scalar where a list was due
    assert target_matches("url", "www.site.com/random", "https://www.site.com/random/")
    assert not target_matches("url", "www.site.com", "www.other.com")
    assert target_matches("id", 6, 6.0) and target_matches("id", 6, "6")
    assert not target_matches("recipient", "x", None)


def test_catalog_loads_and_is_sound():
    data = json.loads(CATALOG_PATH.read_text())
    catalog = Catalog.from_dict(data)
    for spec in catalog.tools.values():
        assert spec.capabilities and spec.capabilities <= set(CAPABILITIES)
    assert catalog.get("send_money").side_effecting
    assert not catalog.get("get_balance").side_effecting


@needs_data
def test_catalog_covers_every_agentdojo_tool():
    catalog = Catalog.load(CATALOG_PATH)
    for key, suite in json.loads(TASKS.read_text()).items():
        for tool in suite["tools"]:
            spec = catalog.get(tool["name"])
            assert spec.known, f"{key}: {tool['name']} has no catalog entry"
            params = tool["parameters"].get("properties", {})
            assert set(spec.targets) <= set(params), f"{tool['name']}: target not a parameter"
