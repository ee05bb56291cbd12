"""Settings: defaults, then a TOML file, then INTENTWATCH_* environment variables.

Each setting is a field of `Settings` with its documentation (help text, whether it is a
secret) in the field's metadata, so the reference (docs/configuration.md, `intentwatch config
docs`) is generated from this module and cannot drift from it. `load_settings` is the one
loader: it refuses an unknown key, a wrong type or an invalid value with a `ConfigError` that
names the setting and where the value came from (the file, or the variable).
"""

from __future__ import annotations

import difflib
import math
import os
import re
import tomllib
from dataclasses import dataclass, field, fields

from .event_time import DEFAULT_ALLOWED_LATENESS
from .retention import DEFAULT_RETENTION_SECONDS

ENV_PREFIX = "INTENTWATCH_"
CONFIG_ENV = "INTENTWATCH_CONFIG"  # path of the settings file (`intentwatch --config` wins)
DEFAULT, FILE, ENV = "default", "file", "env"
_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")


class ConfigError(ValueError):
    """A setting that cannot be used; the message names it and its origin."""


# -- per-setting checks: each returns what is wrong with a value, or None -------------------
def _at_least(low):
    return lambda v: None if v >= low else f"must be at least {low}"


def _positive(v):
    return None if math.isfinite(v) and v > 0 else "must be a positive number of seconds"


def _fraction(v):
    return None if 0 < v <= 1 else "must be in (0, 1]"


def _non_empty(v):
    return None if v.strip() else "must not be empty"


def _topic(v):
    return None if _TOPIC.fullmatch(v) else "must be 1 to 249 of the characters A-Z a-z 0-9 . _ -"


def _broker(v):
    ok = v.startswith(("kafka://", "aiokafka://")) and v.split("://", 1)[1].strip()
    return None if ok else "must look like kafka://host:port (several: separated by ;)"


def _port(v):
    return None if 1 <= v <= 65535 else "must be a TCP port, 1 to 65535"


def _host(v):
    return None if v.strip() and not re.search(r"[\s/]", v) else \
        "must be a host name or an IP address (no scheme, no path)"


def _http_url(v):
    return None if not v or v.startswith(("http://", "https://")) else \
        "must be empty or an http:// or https:// URL"


PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")


def _one_of(choices):
    return lambda v: None if v in choices else "must be one of " + ", ".join(choices)


def _file_or_empty(v):
    return None if not v or os.path.isfile(v) else "no such file"


def setting(default, help: str, check=None, secret: bool = False):
    """A field of Settings with its documentation. A secret stays out of repr(), of
    `config show` and of every error message."""
    return field(default=default, repr=not secret,
                 metadata={"help": help, "check": check, "secret": secret})


def _topic_setting(default: str, what: str):
    return setting(default, f"topic of {what}", _topic)


@dataclass(frozen=True)
class Settings:
    broker: str = setting("kafka://127.0.0.1:9092",
                          "Kafka bootstrap servers, kafka://host:port (several: separated by ;)",
                          _broker)
    app_id: str = setting("intentwatch", "Faust app id: the consumer group and the prefix of "
                          "the changelog and model topics", _topic)
    topic_intents: str = _topic_setting("agent.intents", "task intents (input)")
    topic_actions: str = _topic_setting("agent.actions", "actions, task ends and credential "
                                        "events (input)")
    topic_decisions: str = _topic_setting("agent.decisions", "decision records (audit)")
    topic_alerts: str = _topic_setting("agent.alerts", "alerts: every decision that is not "
                                       "allow")
    topic_revocations: str = _topic_setting("agent.revocations", "revoke commands")
    topic_dead_letters: str = _topic_setting("agent.deadletters", "records that break the "
                                             "contract, with the reason in headers")
    topic_acks: str = _topic_setting("agent.revocations.acks", "acknowledgements of enforced "
                                     "revoke commands")
    partitions: int = setting(4, "partitions of the topics the worker creates (tasks are "
                              "partitioned by task id; more partitions, more workers can share "
                              "the load)", _at_least(1))
    replication: int = setting(1, "replication factor of the topics the worker creates (1 "
                               "for a single broker; 3 on a production cluster)", _at_least(1))
    catalog: str = setting("", "path of the tool catalog JSON (empty: every tool is unknown, "
                           "treated as side-effecting)")
    alert_at: float = setting(0.5, "risk at or above which a decision is an alert "
                              "(at most revoke_at)", _fraction)
    revoke_at: float = setting(0.9, "risk at or above which a decision revokes", _fraction)
    max_event_bytes: int = setting(512 * 1024, "size limit of one event; a bigger one is a "
                                   "dead letter", _at_least(1024))
    web_port: int = setting(6066, "port of the worker's web server (/metrics, /healthz, "
                            "/readyz, /v1/decide)", _port)
    web_bind: str = setting("127.0.0.1", "interface the worker's and the gateway's web "
                            "servers listen on (0.0.0.0 in a container)", _host)
    web_host: str = setting("127.0.0.1", "host name other workers reach this worker at: the "
                            "worker advertises http://web_host:web_port to its consumer group "
                            "and forwards POST /v1/decide to the owner's; must be distinct and "
                            "reachable per worker (in Kubernetes the pod's DNS name)", _host)
    data_dir: str = setting("intentwatch-data", "Faust's data directory (the task table itself "
                            "is in memory, rebuilt from its changelog topic at start)",
                            _non_empty)
    fast_rebalance: bool = setting(False, "2 s session and 4 s rebalance timeouts instead of "
                                   "Faust's 60 s (tests and the demo; not for production)")
    recovery_stall_seconds: float = setting(60.0, "a table recovery that has had no record "
                                            "for this long from a partition it still has to "
                                            "read makes the worker exit with code 75, for its "
                                            "supervisor to start a fresh one "
                                            "(streams/recovery_watchdog.py)", _positive)
    model_snapshot_seconds: float = setting(30.0, "how often learned models are saved to the "
                                            "compacted topic <app_id>-models", _positive)
    signing_key: str = setting("", "PEM file of the Ed25519 private key that signs revoke "
                               "commands and model snapshots (empty: commands go out unsigned "
                               "and verifying consumers reject them; model snapshots are "
                               "restored unverified)")
    verify_keys: str = setting("", "comma-separated PEM files of the public keys that "
                               "`intentwatch enforce` and the gateway trust")
    alertmanager_url: str = setting("", "Alertmanager-compatible webhook (.../api/v2/alerts) "
                                    "that alerts are pushed to (empty: off)", _http_url)
    # One hour by default: late events of an ended task are still refused and explained with
    # the task's own state for that long, and the store holds about (tasks ending per second)
    # x retention compact ended states (~650 bytes each): 100 tasks/s -> 360,000 states.
    retention_seconds: float = setting(
        DEFAULT_RETENTION_SECONDS, "event-time seconds after which an ended task (after its "
        "end) or an expired one (after its expires_at) is freed; keep it at least as long as "
        "credentials live",
        lambda v: None if math.isfinite(v) and v >= 0 else "must be at least 0")
    allowed_lateness_seconds: float = setting(
        DEFAULT_ALLOWED_LATENESS, "event-time seconds an event may be older than the latest "
        "event of its task and still be decided by its own time; an older one is decided, "
        "marked late_event, an action as if it happened at that latest time (docs/event-time.md)",
        lambda v: None if math.isfinite(v) and v >= 0 else "must be at least 0")
    fail_closed: bool = setting(False, "while the worker is rebalancing or recovering its task "
                                "table, POST /v1/decide denies side-effecting actions "
                                "(state_recovering) instead of answering 503 (docs/event-time.md)")
    # A longer wait makes fuller batches under light traffic and adds up to that much to each
    # decision's latency; a shorter one costs more CPU per event (BENCHMARKS.md, latency).
    batch_max: int = setting(500, "most records the worker decides at a time", _at_least(1))
    batch_wait: float = setting(0.002, "seconds the worker waits for more records before "
                                "deciding what it has", _fraction)
    state_cache: int = setting(10_000, "task states (and delegation entries) kept decoded, "
                               "most recently used first (about 6 KB each)", _at_least(0))
    decide_token: str = setting("", "bearer token of POST /v1/decide (empty: the endpoint "
                                "refuses every request)", secret=True)
    dashboard_token: str = setting("", "bearer token of the dashboard's data (/api/*; the "
                                   "page asks for it; empty: the data endpoints refuse every "
                                   "request)", secret=True)
    # Kafka client security: every client of the project takes these (streams.kafka_security).
    security_protocol: str = setting("PLAINTEXT", "Kafka security protocol: PLAINTEXT, SSL, "
                                     "SASL_PLAINTEXT or SASL_SSL", _one_of(PROTOCOLS))
    sasl_mechanism: str = setting("SCRAM-SHA-512", "SASL mechanism (with SASL_*): "
                                  "SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN", _one_of(MECHANISMS))
    sasl_username: str = setting("", "SASL user name (required with SASL_*)")
    sasl_password: str = setting("", "SASL password (required with SASL_*)", secret=True)
    ssl_cafile: str = setting("", "PEM file of the CA(s) that signed the brokers' certificates "
                              "(with SSL or SASL_SSL; empty: the system's CAs)", _file_or_empty)
    ssl_certfile: str = setting("", "PEM client certificate for mutual TLS (optional; with "
                                "ssl_keyfile)", _file_or_empty)
    ssl_keyfile: str = setting("", "PEM private key of ssl_certfile (optional)", _file_or_empty)

    @classmethod
    def from_env(cls) -> Settings:
        """The settings of this process (INTENTWATCH_CONFIG's file, then the environment):
        `load_settings()` for callers that need only the settings."""
        return load_settings()[0]

    def validate(self) -> None:
        """Raise ConfigError naming the first bad setting (by its name: use load_settings to
        have errors name the file or variable too)."""
        _validate(self, {})

    def topics(self) -> list[str]:
        return [self.topic_intents, self.topic_actions, self.topic_decisions, self.topic_alerts,
                self.topic_revocations, self.topic_dead_letters, self.topic_acks]

    @property
    def bootstrap(self) -> str:
        """host:port list for plain aiokafka clients."""
        return self.broker.split("://", 1)[1].replace(";", ",")


SETTINGS = {f.name: f for f in fields(Settings)}


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def kind(name: str) -> type:
    return type(SETTINGS[name].default)


def load_settings(config_file: str | None = None, environ=None) -> tuple[Settings, dict]:
    """(settings, origin of each setting: {name: (DEFAULT | FILE | ENV, where)}).

    Precedence: defaults < the file (`config_file`, else $INTENTWATCH_CONFIG) < INTENTWATCH_*
    variables. An empty variable counts as unset."""
    environ = os.environ if environ is None else environ
    values = {name: f.default for name, f in SETTINGS.items()}
    origins = {name: (DEFAULT, "") for name in SETTINGS}
    path = config_file or environ.get(CONFIG_ENV) or None
    if path:
        for name, value in read_file(path).items():
            values[name], origins[name] = value, (FILE, path)
    for name in SETTINGS:
        raw = environ.get(env_name(name))
        if raw:
            values[name] = _from_text(name, raw, env_name(name))
            origins[name] = (ENV, env_name(name))
    settings = Settings(**values)
    _validate(settings, origins)
    return settings, origins


def read_file(path: str) -> dict:
    """The settings of a TOML file, type-checked (values are validated by load_settings)."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such settings file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:  # (tomllib decodes the whole file first)
        raise ConfigError(f"{path}: not UTF-8 text: {exc}") from None
    except RecursionError:  # tomllib recurses once per level of nested arrays and tables
        raise ConfigError(f"{path}: not valid TOML: nested too deeply") from None
    for key, value in data.items():
        if key not in SETTINGS:
            near = difflib.get_close_matches(key, SETTINGS, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ConfigError(f"{path}: unknown setting {key!r}{hint}")
        data[key] = _typed(key, value, f"{path}: {key}")
    return data


def _typed(name: str, value, where: str):
    want = kind(name)
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is not want:
        shown = "(hidden)" if SETTINGS[name].metadata["secret"] else repr(value)
        raise ConfigError(f"{where}: expected {_KIND_NAMES[want]}, got "
                          f"{type(value).__name__} {shown}")
    return value


def _from_text(name: str, raw: str, where: str):
    want = kind(name)
    try:
        return _bool(raw) if want is bool else want(raw)
    except ValueError:
        shown = "(hidden)" if SETTINGS[name].metadata["secret"] else repr(raw)
        raise ConfigError(f"{where}={shown}: expected {_KIND_NAMES[want]}") from None


_KIND_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def describe(name: str, origins: dict) -> str:
    """Where a setting's value came from, for error messages."""
    source, where = origins.get(name, (DEFAULT, ""))
    if source == ENV:
        return f"{where} (setting {name})"
    if source == FILE:
        return f"{name} in {where}"
    return f"{name} (default)" if origins else name


def _validate(settings: Settings, origins: dict) -> None:
    for name, f in SETTINGS.items():
        check = f.metadata["check"]
        value = getattr(settings, name)
        problem = check(value) if check else None
        if problem:
            shown = "(hidden)" if f.metadata["secret"] else repr(value)
            raise ConfigError(f"{describe(name, origins)} = {shown}: {problem}")
    if settings.alert_at > settings.revoke_at:
        raise ConfigError(f"{describe('alert_at', origins)} = {settings.alert_at!r} must not be "
                          f"above {describe('revoke_at', origins)} = {settings.revoke_at!r}")
    problem = _kafka_security_problem(settings)
    if problem:
        name, what = problem
        raise ConfigError(f"{describe(name, origins)}: {what}")


def _kafka_security_problem(s: Settings) -> tuple[str, str] | None:
    """(setting, what is wrong) when the Kafka security settings do not fit together: a
    setting that the protocol would silently ignore is an error, not a surprise."""
    sasl, tls = s.security_protocol.startswith("SASL_"), s.security_protocol.endswith("SSL")
    if sasl and not (s.sasl_username and s.sasl_password):
        return ("sasl_username" if not s.sasl_username else "sasl_password",
                f"must be set with security_protocol {s.security_protocol}")
    if not sasl and (s.sasl_username or s.sasl_password):
        return ("sasl_username" if s.sasl_username else "sasl_password",
                f"is set but security_protocol {s.security_protocol} uses no SASL")
    for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        if getattr(s, name) and not tls:
            return name, f"is set but security_protocol {s.security_protocol} uses no TLS"
    if bool(s.ssl_certfile) != bool(s.ssl_keyfile):
        return ("ssl_keyfile" if s.ssl_certfile else "ssl_certfile",
                "ssl_certfile and ssl_keyfile go together (mutual TLS)")
    return None


def _bool(raw: str) -> bool:
    low = raw.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")
