"""The one way every Kafka client of the project gets its security settings (TLS, SASL).

`kafka_client_options(settings)` is the keyword arguments of a plain aiokafka client
(producer, consumer, admin); `faust_credentials(settings)` is the same for the Faust app.
`check_broker(settings)` connects once before a command starts its clients, so a wrong
password, an untrusted certificate or a wrong protocol ends the command with a message that
names the problem, where aiokafka itself would only log it and retry or say "Unable to
bootstrap".
"""

from __future__ import annotations

import asyncio
import ssl

from monitor.config import Settings

CHECK_TIMEOUT = 15.0


class BrokerAccessError(Exception):
    """The broker cannot be used with these settings; the message says why (never a secret)."""


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context (server certificate and host name verified), or None without TLS."""
    if not settings.security_protocol.endswith("SSL"):
        return None
    from aiokafka.helpers import create_ssl_context

    return create_ssl_context(cafile=settings.ssl_cafile or None,
                              certfile=settings.ssl_certfile or None,
                              keyfile=settings.ssl_keyfile or None)


def kafka_client_options(settings: Settings) -> dict:
    """bootstrap_servers and the security arguments of an aiokafka client."""
    options = {"bootstrap_servers": settings.bootstrap,
               "security_protocol": settings.security_protocol}
    context = ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    if settings.security_protocol.startswith("SASL_"):
        options.update(sasl_mechanism=settings.sasl_mechanism,
                       sasl_plain_username=settings.sasl_username,
                       sasl_plain_password=settings.sasl_password)
    return options


def faust_credentials(settings: Settings):
    """Faust's `broker_credentials` for the settings (None: PLAINTEXT)."""
    import faust

    protocol = settings.security_protocol
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(ssl_context(settings))
    # SASLCredentials picks SASL_SSL when it has a context, SASL_PLAINTEXT otherwise.
    return faust.SASLCredentials(username=settings.sasl_username,
                                 password=settings.sasl_password,
                                 mechanism=settings.sasl_mechanism,
                                 ssl_context=ssl_context(settings))


async def check_broker(settings: Settings, timeout: float = CHECK_TIMEOUT) -> None:
    """Connect to the first bootstrap server and authenticate; BrokerAccessError if that
    fails, naming the cause (refused, TLS verification, SASL authentication, no answer)."""
    from aiokafka.conn import create_conn
    from aiokafka.errors import KafkaError

    host, _, port = settings.bootstrap.split(",")[0].strip().rpartition(":")
    options = kafka_client_options(settings)
    options.pop("bootstrap_servers")
    where = f"{host}:{port} over {settings.security_protocol}"
    try:
        conn = await asyncio.wait_for(
            create_conn(host, int(port), request_timeout_ms=int(timeout * 1000), **options),
            timeout)
    except TimeoutError:
        hint = (" (is the broker's listener TLS or SASL? set security_protocol)"
                if settings.security_protocol == "PLAINTEXT" else "")
        raise BrokerAccessError(f"{where}: no answer within {timeout:.0f} s{hint}") from None
    except ssl.SSLCertVerificationError as exc:
        raise BrokerAccessError(
            f"{where}: the broker's TLS certificate is not trusted "
            f"({exc.verify_message}; ssl_cafile = {settings.ssl_cafile or '(system CAs)'})"
        ) from None
    except ssl.SSLError as exc:
        raise BrokerAccessError(f"{where}: TLS handshake failed: {exc.reason}") from None
    except KafkaError as exc:
        name = type(exc).__name__
        if "Sasl" in name or "Authentication" in name:
            raise BrokerAccessError(
                f"{where}: SASL {settings.sasl_mechanism} authentication as "
                f"{settings.sasl_username!r} failed (wrong user name or password?)") from None
        hint = (" (the broker closed the connection: does its listener expect TLS? set "
                "security_protocol)" if not settings.security_protocol.endswith("SSL") else "")
        raise BrokerAccessError(f"{where}: {name}: {exc}{hint}") from None
    except OSError as exc:
        raise BrokerAccessError(f"{where}: cannot connect: {exc.strerror or exc}") from None
    conn.close()
