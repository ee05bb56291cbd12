"""Named detector line-ups, so the worker, replay and evaluation build engines the same way."""

from __future__ import annotations

from .catalog import Catalog
from .detectors import scope_rules
from .detectors.allowlist import Allowlist
from .engine import Engine
from .policy import Policy

PROFILES = ("full", "rules", "allowlist")


def build_engine(profile: str = "full", catalog: Catalog | None = None,
                 policy: Policy | None = None, store=None) -> Engine:
    if profile == "allowlist":
        detectors = [Allowlist()]
    elif profile in ("full", "rules"):
        detectors = scope_rules()
    else:
        raise ValueError(f"unknown profile {profile!r}; choose one of {PROFILES}")
    return Engine(catalog=catalog, detectors=detectors, policy=policy, store=store)
