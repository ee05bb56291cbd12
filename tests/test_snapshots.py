"""Learned-model snapshots (monitor.detectors.snapshot, streams.models), no broker: plain
versioned JSON, refused with a reason when anything else, pickles never read; each detector
restored from its snapshot scores as the original; the engine loads what it can; snapshot
records are signed and a bad one is skipped, reported and counted."""

from __future__ import annotations

import copy
import json
import pickle
import random
import zlib
from itertools import product

import numpy as np
import orjson
import pytest

from monitor import signing
from monitor.catalog import Catalog
from monitor.detectors import snapshot
from monitor.detectors.injection_evidence import InjectionEvidence
from monitor.detectors.sequence_model import CODE, SequenceModel
from monitor.detectors.snapshot import SnapshotError
from monitor.detectors.text_model import layout
from monitor.detectors.window_anomaly import FEATURES, WindowAnomaly
from monitor.metrics import REGISTRY
from monitor.profiles import build_engine
from streams import models

from . import synthetic

CATALOG = Catalog.from_dict(synthetic.CATALOG)
LEARNED = ("injection_evidence", "sequence_model", "window_anomaly")


def run(engine, events):
    return [d for e in events for d in engine.process(copy.deepcopy(e))]


def training(n: int = 60) -> list[dict]:
    """Rule-caught hijacks (the injection model's positives), declared ones and benign tasks,
    their events interleaved so that tasks are open at any cut."""
    tasks = []
    for i in range(n):
        tasks += [synthetic.benign(i, 100.0 * i), synthetic.hijacked_undeclared(i, 100.0 * i + 1)]
        if i % 4 == 0:
            tasks.append(synthetic.hijacked_declared(i, 100.0 * i + 2))
    return sorted((e for t in tasks for e in t), key=lambda e: e["event_time"])


def open_cut(events: list[dict]) -> int:
    """A cut in the middle of the events where tasks are open that have read something (what
    the injection model holds in its buffer)."""
    middle = next(i for i, e in enumerate(events) if e["task_id"] == "b-30")
    return next(i for i, e in enumerate(events[middle:], middle) if e.get("result")) + 1


def trained(cut: int | None = None):
    """An engine trained on the first `cut` training events, and the events."""
    events = training()
    engine = build_engine("full", CATALOG)
    run(engine, events[:cut])
    return engine, events


def detector(engine, name):
    return next(d for d in engine.detectors if d.name == name)


class Payload:
    """A pickle that creates a file when it is unpickled."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


# -- the envelope ---------------------------------------------------------------------------
def test_a_snapshot_is_a_plain_versioned_document():
    blob = snapshot.dump("thing", 3, {"n": 1, "x": [0.5, "a"], "o": {"k": None}})
    assert orjson.loads(blob) == {"format": "intentwatch.thing", "version": 3, "n": 1,
                                  "x": [0.5, "a"], "o": {"k": None}}
    doc = snapshot.load(blob, "thing", 3)
    assert snapshot.field(doc, "n", int) == 1 and snapshot.field(doc, "n", float) == 1.0
    assert snapshot.field(doc, "o", dict) == {"k": None}


DOC = {"format": "intentwatch.thing", "version": 1}


@pytest.mark.parametrize("blob,reason", [
    (b"", "not JSON"),
    (b"\x00\x01 not json", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (json.dumps({**DOC, "x": float("nan")}).encode(), "not JSON"),      # NaN, as Python writes
    (json.dumps({**DOC, "x": 1e999}).encode(), "not JSON"),           # Infinity
    (b'{"format": "intentwatch.thing", "version": 1, "x": 1e999}', "infinity"),
    (orjson.dumps({**DOC, "format": "intentwatch.other"}), "format 'intentwatch.other'"),
    (orjson.dumps({"version": 1}), "format None"),
    (orjson.dumps({**DOC, "version": 2}), "unknown version 2"),
    (orjson.dumps({**DOC, "version": True}), "unknown version True"),
    (orjson.dumps({**DOC, "version": "1"}), "unknown version '1'"),
    (pickle.dumps({"format": "intentwatch.thing", "version": 1}), "pickle"),
    (pickle.dumps(None, protocol=2), "pickle"),
    (b" " * (snapshot.MAX_BYTES + 1), "over the limit"),
])
def test_load_refuses_with_a_reason(blob, reason):
    with pytest.raises(SnapshotError) as err:
        snapshot.load(blob, "thing", 1)
    assert reason in err.value.reason and str(err.value) == err.value.reason


def test_load_refuses_what_is_not_bytes():
    with pytest.raises(SnapshotError, match="not bytes"):
        snapshot.load(orjson.dumps(DOC).decode(), "thing", 1)


@pytest.mark.parametrize("doc,name,kind,reason", [
    ({}, "n", int, "missing field 'n'"),
    ({"n": True}, "n", int, "'n' is not an integer"),
    ({"n": 1.5}, "n", int, "'n' is not an integer"),
    ({"n": "1"}, "n", float, "'n' is not a number"),
    ({"n": False}, "n", float, "'n' is not a number"),
    ({"n": [1]}, "n", dict, "'n' is not an object"),
    ({"n": {}}, "n", list, "'n' is not a list"),
    ([], "n", int, "its parent is not an object"),
])
def test_a_missing_field_or_a_wrong_type_is_refused(doc, name, kind, reason):
    with pytest.raises(SnapshotError, match=reason):
        snapshot.field(doc, name, kind)


def test_items_refuse_a_wrong_type_and_give_floats():
    assert snapshot.items([1, 2.5], float, "xs") == [1.0, 2.5]
    for bad in ([1, True], [1, "2"], [None]):
        with pytest.raises(SnapshotError, match="xs hold something that is not"):
            snapshot.items(bad, int, "xs")


def test_a_packed_array_comes_back_exactly_and_only_as_it_was_declared():
    values = np.array([0.1, -2.5e-300, 1e300, 0.0])
    doc = orjson.loads(orjson.dumps({"a": snapshot.pack(values)}))
    back = snapshot.unpack(doc, "a", "<f8", 10)
    assert np.array_equal(back, values) and back.flags.writeable
    packed = doc["a"]
    for change, reason in [({"dtype": "<f4"}, "dtype must be '<f8'"),
                           ({"dtype": "|O"}, "dtype must be"),
                           ({"length": 5}, "not 5 values"),
                           ({"length": -1}, "length -1 not in"),
                           ({"length": 11}, "length 11 not in"),
                           ({"data": packed["data"][:-4]}, "not 4 values"),
                           ({"data": "!!!!"}, "not base64"),
                           ({"data": 7}, "'data' is not a string")]:
        with pytest.raises(SnapshotError, match=reason):
            snapshot.unpack({"a": {**packed, **change}}, "a", "<f8", 10)
    for value in (np.nan, np.inf, -np.inf):
        with pytest.raises(SnapshotError, match="not finite"):
            snapshot.unpack({"a": snapshot.pack(np.array([1.0, value]))}, "a", "<f8", 10)


# -- pickles are never read ---------------------------------------------------------------------
def test_a_pickle_that_would_run_code_is_refused_without_running_it(tmp_path):
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(Payload(control)))  # the payload works: unpickled, it writes
    assert control.exists()

    marker = tmp_path / "ran"
    payload = pickle.dumps(Payload(marker))
    for det in (SequenceModel(CATALOG), WindowAnomaly(), InjectionEvidence(CATALOG)):
        with pytest.raises(SnapshotError, match="pickles are no longer loaded"):
            det.load_state(payload)
    refused = build_engine("full", CATALOG).load_model_state(dict.fromkeys(LEARNED, payload))
    assert set(refused) == set(LEARNED)
    restored = models.restore(build_engine("full", CATALOG), models.Snapshot(
        dict.fromkeys(LEARNED, zlib.compress(payload)), []))
    assert restored == []
    assert not marker.exists()


# -- each detector restored from its snapshot scores as the original ----------------------------
def restored(det, fresh):
    """`fresh` loaded from `det`'s snapshot, through its bytes as they would be stored."""
    fresh.load_state(zlib.decompress(zlib.compress(det.state())))
    return fresh


def test_the_sequence_model_restored_scores_every_move_as_the_original():
    engine, _ = trained()
    det = detector(engine, "sequence_model")
    again = restored(det, SequenceModel(CATALOG))
    assert {k: (dict(m.counts), m.n_samples) for k, m in again.models.items()} == \
        {k: (dict(m.counts), m.n_samples) for k, m in det.models.items()}

    def scores(model):
        found = []
        for tools, previous, suspicion, tool in product(
                (["read_inbox", "send_email"], ["read_inbox", "get_webpage"], ["send_email"]),
                ["", *CODE.values()], (0.0, 0.9), synthetic.CATALOG["tools"]):
            task = {"intent": {"tools": tools}, "sequence": previous,
                    "provenance": {"suspicion": suspicion}}
            found.append(model.score_one({"tool": tool}, task, CATALOG.get(tool)))
        return found
    assert scores(again) == scores(det)
    assert sum(map(bool, scores(det))) > 10  # moves found improbable, with their probability
    # ... and they learn on alike.
    for model in (det, again):
        model.task_ended({"intent": {"tools": ["send_email"]}, "sequence": "ab"}, True)
    assert scores(again) == scores(det)


def test_the_window_anomaly_restored_scores_and_learns_as_the_original():
    det = WindowAnomaly()
    rng = random.Random(5)
    points = [tuple(rng.randrange(21) / 20 for _ in FEATURES) for _ in range(2000)]
    for x in points[:730]:  # seven windows and part of one: points pending
        det.model.learn_one(x)
    det.learned = 730
    again = restored(det, WindowAnomaly())
    assert again.learned == 730 and again.model._pending
    for x in points[730:]:
        assert again.model.score_one(x) == det.model.score_one(x)
        again.model.learn_one(x)
        det.model.learn_one(x)
    assert len({det.model.score_one(x) for x in points[:300]}) > 10  # scores that differ


def test_the_injection_model_restored_scores_and_holds_what_the_original_does():
    engine, events = trained(cut=open_cut(training()))
    det = detector(engine, "injection_evidence")
    assert det.positives >= 5 and det.negatives > 0 and det.buffer  # tasks open at the cut
    again = restored(det, InjectionEvidence(CATALOG))
    assert (again.positives, again.negatives, again.buffered) == \
        (det.positives, det.negatives, det.buffered)
    assert np.array_equal(again.model.w, det.model.w) and again.model.b == det.model.b
    assert {t: [(s, lo) for s, _, lo in h.parts] for t, h in again.buffer.items()} == \
        {t: [(s, lo) for s, _, lo in h.parts] for t, h in det.buffer.items()}
    results = [e["result"] for e in events if e.get("result")]
    for result in results:
        segs = [s for s in result.splitlines() if s]
        lay = layout([det.features.buckets(s) for s in segs])
        assert np.array_equal(again.model.logits(lay), det.model.logits(lay))
    assert max(det.suspicion(["", s, ""]) for r in results for s in r.splitlines()) > 0.5


def test_an_engine_restored_mid_stream_decides_on_as_the_uninterrupted_one():
    events = training()
    whole = run(build_engine("full", CATALOG), events)
    half = open_cut(events)
    before = build_engine("full", CATALOG)
    part1 = run(before, events[:half])
    assert detector(before, "injection_evidence").buffer  # the buffer is part of it
    after = build_engine("full", CATALOG, store=orjson.loads(orjson.dumps(before.store)))
    assert after.load_model_state(before.model_state()) == {}
    assert part1 + run(after, events[half:]) == whole


# -- the engine loads each detector on its own --------------------------------------------------
def test_the_engine_loads_the_good_snapshots_and_says_why_it_refused_the_others(tmp_path):
    source, _ = trained()
    saved = source.model_state()
    fresh = build_engine("full", CATALOG).model_state()
    snap = dict(saved, window_anomaly=b"garbage",
                injection_evidence=saved["sequence_model"],   # another detector's snapshot
                rule_that_never_learns=b"ignored")
    engine = build_engine("full", CATALOG)
    refused = engine.load_model_state(snap)
    assert refused.keys() == {"window_anomaly", "injection_evidence"}
    assert refused["window_anomaly"].startswith("not JSON")
    assert "expected 'intentwatch.injection_evidence'" in refused["injection_evidence"]
    state = engine.model_state()
    assert state["sequence_model"] == saved["sequence_model"] != fresh["sequence_model"]
    # The refused ones start fresh, as a detector that never had a snapshot.
    assert state["window_anomaly"] == fresh["window_anomaly"]
    assert state["injection_evidence"] == fresh["injection_evidence"]
    assert engine.learned() == sorted(LEARNED, key=list(state).index)


def test_a_refused_snapshot_leaves_the_detector_as_it_was():
    source, _ = trained()
    det = detector(source, "injection_evidence")
    before = det.state()
    doc = orjson.loads(before)
    doc["buffer"] = {"t": [[["a segment"], 3]]}  # a first kept segment past the part's end
    with pytest.raises(SnapshotError, match="not \\[segments, first kept\\]"):
        det.load_state(orjson.dumps(doc))
    assert det.state() == before


@pytest.mark.parametrize("name,path,value,reason", [
    ("sequence_model", ["counts"], {"x": {"no:such:state": 1}}, "an unknown state"),
    ("sequence_model", ["counts"], {"x": {"read:d:c": -1}}, "a count out of range"),
    ("sequence_model", ["counts"], {f"k{i}": {} for i in range(2000)}, "more than 1600"),
    ("window_anomaly", ["learned"], -1, "learned: negative"),
    ("window_anomaly", ["forest", "height"], 40, "out of range"),
    ("window_anomaly", ["forest", "n_trees"], 11, "values, the trees have"),
    ("window_anomaly", ["forest", "features"], list("abcdefg"), "its features are not"),
    ("window_anomaly", ["forest", "feature"], [7] * 5110, "feature: out of range"),
    ("window_anomaly", ["forest", "r_mass"], [101] * 5110, "a mass out of range"),
    ("window_anomaly", ["forest", "counter"], 100, "counter: not in"),
    ("window_anomaly", ["forest", "pending"], [[0.5]], "a point without a value per feature"),
    ("injection_evidence", ["model", "buckets"], 1024, "buckets: not 262144"),
    ("injection_evidence", ["model", "bias"], 1e300, "a weight beyond"),
    ("injection_evidence", ["positives"], -3, "negative"),
    ("injection_evidence", ["buffer"], {"t": [[["x" * 401], 0]]}, "over 400 characters"),
    ("injection_evidence", ["buffer"], {"t": [[["x"] * 30, 0]]}, "over 24 segments kept"),
    ("injection_evidence", ["buffer"], {"t": [[[1], 0]]}, "hold something that is not"),
])
def test_each_detector_checks_what_its_model_needs(name, path, value, reason):
    source, _ = trained()
    doc = orjson.loads(detector(source, name).state())
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(SnapshotError, match=reason):
        detector(build_engine("full", CATALOG), name).load_state(orjson.dumps(doc))


def test_the_text_model_refuses_weights_out_of_place():
    source, _ = trained()
    doc = orjson.loads(detector(source, "injection_evidence").state())
    index = snapshot.unpack(doc["model"], "index", "<i4", 1 << 18)
    for bad in (index[::-1], np.concatenate([index[:1], index[:1]]), index - index[0] - 1):
        n = bad.size
        model = dict(doc["model"], index=snapshot.pack(bad.astype("<i4")),
                     weight=snapshot.pack(np.ones(n)))
        with pytest.raises(SnapshotError, match="index: not increasing buckets"):
            InjectionEvidence(CATALOG).load_state(orjson.dumps(dict(doc, model=model)))


# -- records of the models topic (streams.models) -----------------------------------------------
@pytest.fixture(scope="module")
def keys():
    return [signing.load_private_key(signing.generate_key_pair()[0]) for _ in range(2)]


def test_a_signed_record_verifies_only_with_its_key_name_and_bytes(keys):
    mine, theirs = keys
    blob = snapshot.dump("sequence_model", 1, {"counts": {}})
    value, headers = models.encode("sequence_model", blob, mine)
    assert [h for h, _ in headers] == [models.KEY_ID_HEADER, models.SIGNATURE_HEADER]
    assert dict(headers)[models.KEY_ID_HEADER] == signing.key_id(mine).encode()
    models.check_record("sequence_model", value, headers, mine)
    assert models.decompress(value) == blob
    models.check_record("sequence_model", value, [], None)  # no key: anything is taken

    def reason(name, value, headers, key=mine):
        with pytest.raises(SnapshotError) as err:
            models.check_record(name, value, headers, key)
        return err.value.reason

    assert reason("sequence_model", value, []) == "unsigned, and this worker has a signing key"
    assert reason("window_anomaly", value, headers).startswith("bad signature")  # moved
    assert reason("sequence_model", value + b"x", headers).startswith("bad signature")
    assert reason("sequence_model", value, headers, theirs) == (
        f"bad signature (key id '{signing.key_id(mine)}', this worker's is "
        f"{signing.key_id(theirs)})")
    forged = [(models.KEY_ID_HEADER, signing.key_id(mine).encode()),
              (models.SIGNATURE_HEADER, signing.sign_snapshot("sequence_model", value,
                                                              theirs).encode())]
    assert reason("sequence_model", value, forged).startswith("bad signature")
    garbage = [(models.SIGNATURE_HEADER, b"\xff\xfe not base64")]
    assert reason("sequence_model", value, garbage).startswith("bad signature (key id ''")
    assert reason("sequence_model", None, headers) == "no value (a tombstone)"
    # A command's signature never passes for a snapshot's (the signed bytes differ).
    assert signing.snapshot_message("x", b"{}").startswith(signing.SNAPSHOT_CONTEXT)


@pytest.mark.parametrize("value,reason", [
    (b"not zlib at all", "not zlib"),
    (zlib.compress(b"{}")[:-3], "truncated"),
    (zlib.compress(b"{}") + b"more", "bytes after its end"),
    (zlib.compress(b"\0" * (snapshot.MAX_BYTES + 1), 9), "over 33554432 bytes"),  # ~33 KB
])
def test_a_record_value_that_is_not_a_bounded_zlib_stream_is_refused(value, reason):
    with pytest.raises(SnapshotError, match=reason):
        models.decompress(value)


def rejected(detector: str) -> float:
    return REGISTRY.get_sample_value("intentwatch_model_snapshots_rejected_total",
                                     {"detector": detector}) or 0.0


def test_restore_loads_the_good_records_and_reports_and_counts_the_others(capsys):
    source, _ = trained()
    saved = source.model_state()
    before = {name: rejected(name) for name in (*LEARNED, models.UNKNOWN)}
    snap = models.Snapshot(
        {"sequence_model": zlib.compress(saved["sequence_model"]),
         "window_anomaly": b"not zlib", "some_other_name": zlib.compress(b"{}")},
        [("injection_evidence", "bad signature (...)"), ("", "no key (no detector name)")])
    engine = build_engine("full", CATALOG)
    assert models.restore(engine, snap) == ["sequence_model"]
    assert engine.model_state()["sequence_model"] == saved["sequence_model"]
    err = capsys.readouterr().err
    assert "skipped a model snapshot record of 'injection_evidence': bad signature" in err
    assert "skipped a model snapshot record of '': no key" in err
    assert "refused the model snapshot of 'window_anomaly': not zlib" in err
    assert "refused the model snapshot of 'some_other_name': no learned detector" in err
    assert "restored learned models: ['sequence_model']" in err
    assert {name: rejected(name) - n for name, n in before.items()} == {
        "injection_evidence": 1.0, "sequence_model": 0.0, "window_anomaly": 1.0,
        models.UNKNOWN: 2.0}
