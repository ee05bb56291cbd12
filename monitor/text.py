"""Text helpers shared by the learned detectors: segments, tokens, normalised values.

Nothing here knows any phrase: it only cuts text into pieces and names the shape of values
(an e-mail address, a URL, a long code) so models can learn from shapes, not from the values.
"""

from __future__ import annotations

import re
from functools import lru_cache

SEGMENT_CHARS = 400       # longest segment kept; long lines are cut into sentences first
_TOKEN = re.compile(r"[a-z0-9][a-z0-9_.@:/+-]*[a-z0-9]|[a-z0-9]")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$")
_URL = re.compile(r"^(https?://|www\.)|\.(com|org|net|io|dev|ai|co)(/|$)")
_CODE = re.compile(r"^(?=.*\d)(?=.*[a-z])[a-z0-9-]{8,}$")
_NUMBER = re.compile(r"^\d[\d.,]*$")


def segments(text: str) -> list[str]:
    """Cut a tool result into short segments: lines, and long lines into sentences."""
    lines = [line for line in map(str.strip, text.splitlines()) if line]
    if all(len(line) <= SEGMENT_CHARS for line in lines):
        return lines
    out = []
    for line in lines:
        if len(line) <= SEGMENT_CHARS:
            out.append(line)
            continue
        for sentence in _SENTENCE.split(line):
            for i in range(0, len(sentence), SEGMENT_CHARS):
                piece = sentence[i:i + SEGMENT_CHARS].strip()
                if piece:
                    out.append(piece)
    return out


@lru_cache(maxsize=1 << 16)
def tokens(text: str) -> tuple[str, ...]:
    """Lower-case word and value tokens; URLs lose scheme and 'www.' so that the same address
    compares equal however it was written. Cached: tool results repeat a lot (listings, pages,
    the same records read by many tasks), and this is the hot path of the text detectors."""
    lowered = text.lower()
    found = _TOKEN.findall(lowered)
    if "://" not in lowered and "www." not in lowered:
        return tuple(found)  # nothing to strip (a token never ends with '/')
    return tuple(_strip_url(t) for t in found)


def _strip_url(token: str) -> str:
    for prefix in ("https://", "http://", "www."):
        token = token.removeprefix(prefix)
    return token.rstrip("/")


@lru_cache(maxsize=1 << 16)
def shape(token: str) -> str | None:
    """The kind of a value-like token, or None for an ordinary word."""
    if _EMAIL.match(token):
        return "email"
    if _URL.search(token):
        return "url"
    if _NUMBER.match(token):
        return "number"
    if _CODE.match(token):
        return "code"
    return None


def normalise(value) -> str:
    """A target value as compared across sources: lower case, no scheme, no 'www.', no
    trailing slash. Floats that are whole numbers lose their '.0'."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return _strip_url(str(value).strip().lower())
