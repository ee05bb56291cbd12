"""Named detector line-ups, so the worker, replay and evaluation build engines the same way."""

from __future__ import annotations

from .catalog import Catalog
from .detectors import scope_rules
from .detectors.allowlist import Allowlist
from .detectors.argument_grounding import ArgumentGrounding
from .detectors.injection_evidence import InjectionEvidence
from .detectors.sequence_model import SequenceModel
from .detectors.window_anomaly import WindowAnomaly
from .engine import Engine
from .event_time import DEFAULT_ALLOWED_LATENESS
from .policy import Policy

PROFILES = ("full", "rules", "allowlist")


def build_engine(profile: str = "full", catalog: Catalog | None = None,
                 policy: Policy | None = None, store=None, registry=None,
                 allowed_lateness: float = DEFAULT_ALLOWED_LATENESS) -> Engine:
    if profile == "allowlist":
        detectors = [Allowlist()]
    elif profile == "rules":
        detectors = scope_rules()
    elif profile == "full":
        catalog = catalog or Catalog()
        detectors = scope_rules() + [InjectionEvidence(catalog), ArgumentGrounding(),
                                     SequenceModel(catalog), WindowAnomaly()]
    else:
        raise ValueError(f"unknown profile {profile!r}; choose one of {PROFILES}")
    return Engine(catalog=catalog, detectors=detectors, policy=policy, store=store,
                  registry=registry, allowed_lateness=allowed_lateness)
