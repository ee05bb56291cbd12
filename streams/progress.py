"""Progress of a long command on stderr, and its end.

A terminal gets one line rewritten in place; a log or a pipe (CI) gets a line at most every
few seconds, so a long run neither floods the log nor looks hung.
"""

from __future__ import annotations

import sys
import time


class Progress:
    """`progress(done, total)` as the importers, eval and produce call it; `finish()` prints
    the last count with the rate. `total` may be unknown (None)."""

    def __init__(self, what: str, unit: str = "events", total: int | None = None,
                 stream=None, every: float | None = None):
        self.what, self.unit, self.total = what, unit, total
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = every if every is not None else (0.25 if self.tty else 5.0)
        self.started = self.last = time.monotonic()
        self.done = 0

    def __call__(self, done: int, total: int | None = None) -> None:
        self.done = done
        if total is not None:
            self.total = total
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self._write(self._line(now), final=False)

    def finish(self) -> None:
        self._write(self._line(time.monotonic()), final=True)

    def _line(self, now: float) -> str:
        seconds = now - self.started
        of = f"/{self.total:,}" if self.total else ""
        rate = f", {self.done / seconds:,.0f}/s" if seconds > 0 and self.done else ""
        return f"  {self.what}: {self.done:,}{of} {self.unit} in {seconds:.1f} s{rate}"

    def _write(self, line: str, final: bool) -> None:
        if self.tty:
            self.stream.write("\r" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def report_bad_lines(source, bad: list[tuple[int, str, str]], total: int, stream=None,
                     where: str | None = None) -> None:
    """Name the first bad lines of an input (path:line: reason: message) on stderr, and how
    many more there were, so a user can find them."""
    stream = stream or sys.stderr
    for line, reason, message in bad:
        print(f"intentwatch: {source}:{line}: {reason}: {message}", file=stream)
    if total > len(bad):
        more = f" (all of them in {where})" if where else ""
        print(f"intentwatch: {source}: {total - len(bad)} more bad lines{more}", file=stream)
