"""A broker whose only client listener is SASL_SSL with SCRAM-SHA-512 (kafka-local.sh with
KAFKA_SECURITY=scram-tls), for the modules that import the fixture: each gets its own."""

from __future__ import annotations

import pytest

from streams import local


@pytest.fixture(scope="module", name="secure_kafka")
def secure_kafka_fixture(tmp_path_factory):
    """(bootstrap, the client settings, state dir) of a broker whose only client listener is
    SASL_SSL with SCRAM-SHA-512, its certificate signed by a CA made for it."""
    missing = local.have_java_and_maven()
    if missing:
        pytest.fail(f"the secure broker needs Java and Maven: {missing} not found")
    state = tmp_path_factory.mktemp("kafka-secure")
    bootstrap = local.start_broker(state, secure=True)
    yield bootstrap, local.secure_client_settings(state), state
    local.stop_broker(state)
