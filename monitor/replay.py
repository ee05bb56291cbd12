"""Replay a recorded trace (JSON lines) through the engine in process, with no broker."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import orjson

from .engine import Engine
from .pipeline import Pipeline

FIRST_BAD_LINES = 5  # bad lines named on the command line; the rest are counted


def count_lines(path: str | Path) -> int:
    return sum(1 for _ in read_lines(path))


def read_lines(path: str | Path) -> Iterator[tuple[int, bytes]]:
    """(line number, raw bytes) of each non-blank line."""
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, 1):
            line = line.rstrip(b"\r\n")
            if line.strip():
                yield number, line


def replay(lines: Iterable[tuple[int, bytes]], engine: Engine, max_bytes: int,
           decisions_out=None, dead_letters_out=None, progress=None) -> dict:
    """Run each line through the pipeline; write decision records and dead letters as JSON
    lines; return counts, the decisions and the first bad lines (line, reason, message)."""
    pipeline = Pipeline(engine, max_bytes)
    summary = {"events": 0, "dead_letters": 0, "decisions": [], "verdicts": {},
               "bad_lines": []}
    for seen, (number, raw) in enumerate(lines, 1):
        if progress is not None:
            progress(seen)
        decisions, err = pipeline.handle(raw)
        if err is not None:
            summary["dead_letters"] += 1
            if len(summary["bad_lines"]) < FIRST_BAD_LINES:
                summary["bad_lines"].append((number, err.code, err.message))
            if dead_letters_out is not None:
                dead_letters_out.write(orjson.dumps({
                    "line": number, "reason": err.code, "error": err.message,
                    "original": raw.decode("utf-8", "replace")}) + b"\n")
            continue
        summary["events"] += 1
        _record(summary, decisions, decisions_out)
    _record(summary, engine.flush(), decisions_out)  # what waited for an intent that never came
    return summary


def _record(summary: dict, decisions: list[dict], decisions_out) -> None:
    for d in decisions:
        summary["decisions"].append(d)
        summary["verdicts"][d["verdict"]] = summary["verdicts"].get(d["verdict"], 0) + 1
        if decisions_out is not None:
            decisions_out.write(orjson.dumps(d) + b"\n")
