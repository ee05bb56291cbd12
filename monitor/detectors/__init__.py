"""Detectors: each one small module behind the interface in `base`."""

from .base import Detector, finding
from .budget import Budget
from .credential_binding import CredentialBinding
from .credential_lifecycle import CredentialLifecycle
from .declared_tools import DeclaredTools
from .resource_scope import ResourceScope
from .task_lifetime import TaskLifetime


def scope_rules() -> list[Detector]:
    """The rule detectors from the foundation, in a stable order."""
    return [TaskLifetime(), CredentialBinding(), CredentialLifecycle(), DeclaredTools(),
            ResourceScope(), Budget()]


__all__ = [
    "Budget",
    "CredentialBinding",
    "DeclaredTools",
    "Detector",
    "ResourceScope",
    "TaskLifetime",
    "finding",
    "scope_rules",
]
