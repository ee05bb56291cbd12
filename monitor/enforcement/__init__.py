"""What consumers of the monitor's output (gateways, credential brokers) run on their side:
verification of signed revoke commands before acting on them."""

from .verify import (
    BAD_SIGNATURE,
    EXPIRED,
    MALFORMED,
    NOT_YET_VALID,
    REASONS,
    REPLAYED,
    UNKNOWN_KEY,
    UNSIGNED,
    ReplayCache,
    Verdict,
    Verifier,
)

__all__ = ["BAD_SIGNATURE", "EXPIRED", "MALFORMED", "NOT_YET_VALID", "REASONS", "REPLAYED",
           "UNKNOWN_KEY", "UNSIGNED", "ReplayCache", "Verdict", "Verifier"]
