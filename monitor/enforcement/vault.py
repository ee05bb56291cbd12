"""HashiCorp Vault enforcement: revoke the Vault tokens and leases behind a command's
credentials, with the `hvac` client.

The monitor names credentials by its own ids; a mapping says what each one is in Vault:

    {"cred-finance-7": {"accessor": "hmac-accessor-of-the-token"},
     "cred-db-1":      {"lease_id": "database/creds/readonly/2f6a..."}}

An accessor is revoked with `auth.token.revoke_accessor` (POST /v1/auth/token/revoke-accessor:
the token and all its children), a lease with `sys.revoke_lease` (PUT /v1/sys/leases/revoke).
A credential the mapping does not know is reported as skipped, not as a failure: the monitor
may track credentials that Vault did not issue. The Vault token used here needs `update` on
those two paths and nothing else.

Connection errors, timeouts, 429 and 5xx answers are tried again with backoff; other errors
(403 permission denied, 400 invalid accessor) are final for that credential.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import hvac
import orjson
import requests
from hvac import exceptions as hvac_errors

KINDS = ("accessor", "lease_id")
_TRANSIENT = (hvac_errors.InternalServerError, hvac_errors.BadGateway, hvac_errors.VaultDown,
              hvac_errors.RateLimitExceeded, requests.ConnectionError, requests.Timeout)


@dataclass(frozen=True)
class VaultResult:
    revoked: list[str] = field(default_factory=list)   # credential ids revoked in Vault
    skipped: list[str] = field(default_factory=list)   # not in the mapping
    failed: dict[str, str] = field(default_factory=dict)  # credential id -> error
    adapter: str = "vault"

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def detail(self) -> str:
        parts = []
        if self.revoked:
            parts.append(f"revoked {self.revoked}")
        if self.skipped:
            parts.append(f"skipped (not mapped) {self.skipped}")
        if self.failed:
            parts.append("failed " + "; ".join(f"{c}: {e}" for c, e in self.failed.items()))
        return ", ".join(parts) or "no credentials"


def check_mapping(mapping: Mapping) -> dict[str, dict[str, str]]:
    """The mapping, validated: each credential id maps to exactly one of accessor/lease_id."""
    if not isinstance(mapping, Mapping):
        raise TypeError("the Vault mapping must be a JSON object: credential id -> target")
    out = {}
    for cred, target in mapping.items():
        if not isinstance(target, Mapping) or len(target) != 1 or next(iter(target)) not in KINDS:
            raise ValueError(f"Vault mapping of {cred!r}: need exactly one of "
                             f'{{"accessor": ...}} or {{"lease_id": ...}}, got {target!r}')
        kind, value = next(iter(target.items()))
        if not isinstance(value, str) or not value:
            raise ValueError(f"Vault mapping of {cred!r}: {kind} must be a non-empty string")
        out[str(cred)] = {kind: value}
    return out


def load_mapping(path: str | Path) -> dict[str, dict[str, str]]:
    """A mapping from a JSON file (see the module doc)."""
    try:
        raw = orjson.loads(Path(path).read_bytes())
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON: {exc}") from None
    return check_mapping(raw)


class VaultAdapter:
    """Revokes in Vault what the credentials of a command map to.

    `revoke(command)` is blocking (hvac uses requests); `enforce(command)` runs it in a thread
    for the event loop. `attempts` tries per credential, the n-th retry after
    `backoff * 2**(n-1)` seconds. The token is held by the hvac client only and stays out of
    repr().
    """

    name = "vault"

    def __init__(self, addr: str, token: str, mapping: Mapping, timeout: float = 10.0,
                 attempts: int = 3, backoff: float = 0.5, namespace: str | None = None):
        if not token:
            raise ValueError("a Vault token is needed")
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.addr, self.attempts, self.backoff = addr, attempts, backoff
        self.mapping = check_mapping(mapping)
        self._client = hvac.Client(url=addr, token=token, timeout=timeout, namespace=namespace)

    def __repr__(self) -> str:
        return f"VaultAdapter({self.addr!r}, {len(self.mapping)} mapped credentials)"

    async def enforce(self, command: dict) -> VaultResult:
        return await asyncio.to_thread(self.revoke, command)

    async def close(self) -> None:
        await asyncio.to_thread(self._client.adapter.close)

    def revoke(self, command: dict) -> VaultResult:
        revoked, skipped, failed = [], [], {}
        for cred in command.get("credential_ids") or []:
            target = self.mapping.get(cred)
            if target is None:
                skipped.append(cred)
                continue
            error = self._revoke_one(target)
            if error is None:
                revoked.append(cred)
            else:
                failed[cred] = error
        return VaultResult(revoked, skipped, failed)

    def _revoke_one(self, target: dict[str, str]) -> str | None:
        """None when done, else what went wrong (after the retries for transient errors)."""
        error = ""
        for attempt in range(1, self.attempts + 1):
            if attempt > 1:
                time.sleep(self.backoff * 2 ** (attempt - 2))
            try:
                if "accessor" in target:
                    self._client.auth.token.revoke_accessor(target["accessor"])
                else:
                    self._client.sys.revoke_lease(target["lease_id"])
                return None
            except _TRANSIENT as exc:
                error = _describe(exc)
            except (hvac_errors.VaultError, requests.RequestException) as exc:
                return _describe(exc)
        return f"gave up after {self.attempts} attempts: {error}"


def _describe(exc: Exception) -> str:
    if isinstance(exc, hvac_errors.VaultError):
        errors = exc.errors
        text = ", ".join(map(str, errors)) if isinstance(errors, list) and errors else str(exc)
        return f"{type(exc).__name__}: {text}"
    return f"{type(exc).__name__}: {exc}"
