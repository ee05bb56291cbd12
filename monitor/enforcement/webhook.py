"""Webhook enforcement: hand a verified revoke command to an HTTP endpoint (a gateway, an
access proxy, a credential broker of one's own).

The body is the signed command exactly as verified, as JSON; the headers repeat its key id and
its own Ed25519 signature, so the receiver can check it with the same public key
(`monitor.enforcement.Verifier`, or `monitor.signing.canonical_bytes` and the key) and need not
trust the transport. Headers:

    Content-Type: application/json
    X-Intentwatch-Key-Id: <command["key_id"]>
    X-Intentwatch-Signature: <command["signature"]>   (unpadded base64url, Ed25519)
    X-Intentwatch-Command-Id: <command["command_id"]>  (for the receiver's de-duplication)

A 2xx answer means done. Connection errors, timeouts, 408, 429 and 5xx are transient and are
tried again with exponential backoff; any other answer (3xx, 4xx) is final. Redirects are not
followed: the command goes to the configured endpoint or nowhere.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Self

import aiohttp
import orjson

from ..signing import KEY_ID_FIELD, SIGNATURE_FIELD

KEY_ID_HEADER = "X-Intentwatch-Key-Id"
SIGNATURE_HEADER = "X-Intentwatch-Signature"
COMMAND_ID_HEADER = "X-Intentwatch-Command-Id"
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
_DETAIL_BYTES = 200  # how much of a refusing answer's body to keep in the result


@dataclass(frozen=True)
class WebhookResult:
    ok: bool
    detail: str = ""
    status: int | None = None  # HTTP status of the last answer; None if none came
    attempts: int = 0
    adapter: str = "webhook"


class WebhookAdapter:
    """POSTs signed revoke commands to `url`.

    `timeout` bounds one attempt (seconds); `attempts` is the number of tries in all; the n-th
    retry waits `backoff * 2**(n-1)` seconds. Use as an async context manager, or call `close()`
    when done (the HTTP session is created on first use, inside the running event loop).
    """

    name = "webhook"

    def __init__(self, url: str, timeout: float = 5.0, attempts: int = 3, backoff: float = 0.5):
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook URL must be http:// or https://, got {url!r}")
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.url, self.timeout, self.attempts, self.backoff = url, float(timeout), attempts, backoff
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"WebhookAdapter({self.url!r}, timeout={self.timeout})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def enforce(self, command: dict) -> WebhookResult:
        signature, kid = command.get(SIGNATURE_FIELD), command.get(KEY_ID_FIELD)
        if not isinstance(signature, str) or not signature or not isinstance(kid, str):
            # Only verified commands come here; an unsigned one would be refused downstream.
            return WebhookResult(False, "command is not signed")
        body = orjson.dumps(command)
        headers = {"Content-Type": "application/json", KEY_ID_HEADER: kid,
                   SIGNATURE_HEADER: signature}
        if isinstance(command.get("command_id"), str):
            headers[COMMAND_ID_HEADER] = command["command_id"]
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout))

        detail, status = "", None
        for attempt in range(1, self.attempts + 1):
            if attempt > 1:
                await asyncio.sleep(self.backoff * 2 ** (attempt - 2))
            try:
                async with self._session.post(self.url, data=body, headers=headers,
                                              allow_redirects=False) as resp:
                    status = resp.status
                    if 200 <= status < 300:
                        return WebhookResult(True, f"HTTP {status}", status, attempt)
                    text = (await resp.content.read(_DETAIL_BYTES)).decode("utf-8", "replace")
                    detail = f"HTTP {status}" + (f": {text.strip()}" if text.strip() else "")
                    if status not in TRANSIENT_STATUSES:
                        return WebhookResult(False, detail, status, attempt)
            except TimeoutError:
                status, detail = None, f"timed out after {self.timeout:g}s"
            except aiohttp.ClientError as exc:
                status, detail = None, f"{type(exc).__name__}: {exc}"
        return WebhookResult(False, f"gave up after {self.attempts} attempts: {detail}", status,
                             self.attempts)
