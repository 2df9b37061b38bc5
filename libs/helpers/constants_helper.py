"""Configuration: one typed, validated object built once from the environment.

Nothing else in the service reads ``os.environ``. ``get_settings()`` builds the
object at cold start and keeps it for the life of the container; a missing or
malformed value raises :class:`~libs.errors.ConfigError` naming the variable,
which stops the function before it takes a message.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import Field, dataclass, field, fields
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus, unquote_plus

from libs.errors import ConfigError

if TYPE_CHECKING:
    from libs.models.severity import RaiseRules, SeverityScale

#: The seven signals of contract §2, in the order they are reported.
SIGNALS: tuple[str, ...] = (
    "latest_price",
    "market_cap_score",
    "liquidity_risk_score",
    "volatility_risk_score",
    "volume",
    "market_cap",
    "volatility_index",
)

#: Positive amounts that move by multiples: their severity is measured on the log scale (contract §9).
RATIO_SIGNALS: tuple[str, ...] = ("latest_price", "volume", "market_cap")
#: Scores and an index already in percent: measured linearly, with a floor in their own units (contract §9).
LEVEL_SIGNALS: tuple[str, ...] = (
    "market_cap_score",
    "liquidity_risk_score",
    "volatility_risk_score",
    "volatility_index",
)

EMBEDDED_URI_SCHEME = "mongomock://"
#: The embedded store (local runs and tests): a tool, named here and loaded by name, never shipped in the
#: Lambda package, so ``mongomock://`` there stops the cold start instead of failing at the first message.
EMBEDDED_STORE_MODULE = "libs.tools.embedded_store"
EMBEDDED_DEFAULT_DATABASE = "risk"
EMBEDDED_DEFAULT_COLLECTION = "coingecko_onchain_scores"

MAX_PERIOD_DAYS = 365
#: Largest Data API page: one response must stay a modest JSON body in the function's memory.
MAX_DATA_API_PAGE_SIZE = 50_000
#: Where the scores are read from (``MONGODB_READ_BACKEND``); the first is the default.
READ_BACKENDS = ("driver", "data_api")

#: A parser turns a variable's (stripped, non-empty) text into its value, or raises ConfigError naming it.
Parser = Callable[[str, str], Any]


#: A plain decimal number as people write one: no underscores (Python's ``float("1_5")`` is 15), no
#: hexadecimal, no ``inf`` or ``nan``; an exponent is allowed.
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_WHOLE = re.compile(r"[+-]?[0-9]+")


def _number(name: str, raw: str) -> float:
    if not (raw.isascii() and _DECIMAL.fullmatch(raw)):
        raise ConfigError(name, f"must be a number such as 1.5, got {raw!r}")
    value = float(raw)
    if not math.isfinite(value):
        raise ConfigError(name, f"must be a finite number, got {raw!r}")
    return value


def whole(minimum: int, maximum: int | None = None) -> Parser:
    """A whole number from ``minimum`` (to ``maximum``), in plain digits."""

    def parse(name: str, raw: str) -> int:
        if not (raw.isascii() and _WHOLE.fullmatch(raw)):
            raise ConfigError(name, f"must be a whole number, got {raw!r}")
        value = int(raw, 10)
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"from {minimum} to {maximum}" if maximum is not None else f"at least {minimum}"
            raise ConfigError(name, f"must be {bound}, got {value}")
        return value

    return parse


def positive_number(name: str, raw: str) -> float:
    """A finite number above 0."""
    value = _number(name, raw)
    if value <= 0:
        raise ConfigError(name, f"must be a finite number above 0, got {raw!r}")
    return value


def day_list(name: str, raw: str) -> tuple[int, ...]:
    """Comma-separated whole days from 1 to :data:`MAX_PERIOD_DAYS`, sorted, duplicates dropped."""
    periods: set[int] = set()
    for part in raw.split(","):
        part = part.strip()
        if not (part.isascii() and part.isdigit()) or not 1 <= int(part) <= MAX_PERIOD_DAYS:
            raise ConfigError(
                name, f"must be a comma-separated list of whole days from 1 to {MAX_PERIOD_DAYS}, got {raw!r}"
            )
        periods.add(int(part))
    return tuple(sorted(periods))


def non_negative_number(name: str, raw: str) -> float:
    """A finite number from 0."""
    value = _number(name, raw)
    if value < 0:
        raise ConfigError(name, f"must be a finite number from 0, got {raw!r}")
    return value


def severity_floors(name: str, raw: str) -> tuple[tuple[str, float], ...]:
    """``signal=floor`` items, comma-separated: each a level signal named once, each floor a finite number ≥ 0.

    Spaces around items and around ``=`` are ignored. Signals not named get
    floor 0 (contract §9).
    """
    floors: dict[str, float] = {}
    for item in raw.split(","):
        signal, sep, floor = (part.strip() for part in item.partition("="))
        if not sep or not signal:
            raise ConfigError(name, f"must be comma-separated signal=floor items, got {item.strip()!r} in {raw!r}")
        if signal not in LEVEL_SIGNALS:
            raise ConfigError(name, f"names {signal!r}, which is not one of {', '.join(LEVEL_SIGNALS)}")
        if signal in floors:
            raise ConfigError(name, f"names {signal} twice")
        floors[signal] = non_negative_number(name, floor)
    return tuple(floors.items())


#: An SNS topic ARN (any partition); the name is 1 to 256 letters, digits, ``-`` or ``_``, plus ``.fifo`` for FIFO.
_SNS_TOPIC_ARN = re.compile(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?")


def sns_topic_arn(name: str, raw: str) -> str:
    """An SNS topic ARN such as ``arn:aws:sns:us-east-1:123456789012:risk-alerts`` (``.fifo`` for a FIFO topic)."""
    if _SNS_TOPIC_ARN.fullmatch(raw) is None:
        raise ConfigError(
            name, f"must be an SNS topic ARN such as arn:aws:sns:us-east-1:123456789012:alerts, got {raw!r}"
        )
    return raw


def one_of(options: tuple[str, ...]) -> Parser:
    """One of ``options`` (case-insensitive); the error lists them."""

    def parse(name: str, raw: str) -> str:
        value = raw.lower()
        if value not in options:
            raise ConfigError(name, f"must be one of {', '.join(options)}, got {value!r}")
        return value

    return parse


def text(name: str, raw: str) -> str:
    """Any non-empty text."""
    return raw


def setting(env: str, default: Any, parse: Parser) -> Any:
    """A :class:`Settings` field read from the variable ``env``: its name, default and parser in one place.

    An unset or blank variable takes ``default``; anything else goes through
    ``parse``, whose :class:`ConfigError` names the variable and what it must be.
    """
    return field(default=default, metadata={"env": env, "parse": parse})


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from its environment, validated.

    ``mongodb_uri`` and ``data_api_key`` are secrets: they are excluded from
    ``repr`` so that no log line or traceback can print them.
    """

    mongodb_uri: str = field(repr=False)
    database: str
    collection: str
    read_backend: str = setting("MONGODB_READ_BACKEND", READ_BACKENDS[0], one_of(READ_BACKENDS))
    deviation_limit: float = setting("QUANTILE_DEVIATION_LIMIT", 1.5, positive_number)
    periods_days: tuple[int, ...] = setting("ANOMALY_PERIODS", (3, 7, 30), day_list)
    min_observations: int = setting("ANOMALY_MIN_OBSERVATIONS", 4, whole(1))
    latest_lookback_hours: int = setting("ANOMALY_LATEST_LOOKBACK_HOURS", 24, whole(1))
    max_range_days: int = setting("ANOMALY_MAX_RANGE_DAYS", 31, whole(1, 3650))
    time_margin_ms: int = setting("ANOMALY_TIME_MARGIN_MS", 15_000, whole(0))
    server_selection_timeout_ms: int = setting("MONGODB_SERVER_SELECTION_TIMEOUT_MS", 5_000, whole(1))
    connect_timeout_ms: int = setting("MONGODB_CONNECT_TIMEOUT_MS", 5_000, whole(1))
    socket_timeout_ms: int = setting("MONGODB_SOCKET_TIMEOUT_MS", 60_000, whole(1))
    data_api_timeout_ms: int = setting("MONGODB_DATA_API_TIMEOUT_MS", 10_000, whole(1))
    data_api_page_size: int = setting("MONGODB_DATA_API_PAGE_SIZE", 5_000, whole(1, MAX_DATA_API_PAGE_SIZE))
    #: contract §10: empty (the default) turns alerts off; nothing for them is created or imported.
    alert_topic_arn: str = setting("ALERT_TOPIC_ARN", "", sns_topic_arn)
    #: contract §9: the floors of the two severity scales.
    severity_relative_floor: float = setting("SEVERITY_RELATIVE_FLOOR", 0.01, non_negative_number)
    severity_absolute_floors: tuple[tuple[str, float], ...] = setting(
        "SEVERITY_ABSOLUTE_FLOORS",
        (
            ("volatility_index", 2.0),
            ("market_cap_score", 1.0),
            ("liquidity_risk_score", 1.0),
            ("volatility_risk_score", 1.0),
        ),
        severity_floors,
    )
    #: contract §9: level 1 starts at this severity, level j + 1 at ALERT_ESCALATION_FACTOR^j times it.
    alert_min_severity: float = setting("ALERT_MIN_SEVERITY", 3.0, positive_number)
    alert_escalation_factor: float = setting("ALERT_ESCALATION_FACTOR", 2.0, positive_number)
    #: contract §9: a step raises when its level beats every earlier step of its episode this recent.
    alert_memory_hours: float = setting("ALERT_MEMORY_HOURS", 24.0, non_negative_number)
    #: At most this many alerts per message (at least 1: to publish none, leave ALERT_TOPIC_ARN empty).
    alert_max_per_message: int = setting("ALERT_MAX_PER_MESSAGE", 50, whole(1))
    metrics_namespace: str = setting("POWERTOOLS_METRICS_NAMESPACE", "CryptoRiskAnomaly", text)
    #: Names the service in every log line, trace and metric, and in MongoDB's ``appname``.
    service_name: str = setting("POWERTOOLS_SERVICE_NAME", "crypto-risk-anomaly", text)
    # Read by _connection/_data_api: they depend on each other (the URI wins, the backend needs them).
    data_api_url: str | None = None
    data_api_key: str | None = field(default=None, repr=False)
    data_source: str | None = None

    @property
    def embedded(self) -> bool:
        """True when the store is the in-memory mongomock one (local runs, tests)."""
        return self.mongodb_uri.startswith(EMBEDDED_URI_SCHEME)

    @property
    def alerts_enabled(self) -> bool:
        """True when ``ALERT_TOPIC_ARN`` names a topic (contract §10)."""
        return self.alert_topic_arn != ""

    @property
    def severity_scale(self) -> SeverityScale:
        """The severity scale of contract §9 (what alerts, the report and the backtest measure with)."""
        from libs.models.severity import SeverityScale  # the model needs numpy; reading settings does not

        return SeverityScale(self.severity_relative_floor, self.severity_absolute_floors)

    @property
    def raise_rules(self) -> RaiseRules:
        """When a flagged step raises its episode (contract §9)."""
        from libs.models.severity import RaiseRules

        return RaiseRules(
            self.alert_min_severity,
            self.alert_escalation_factor,
            self.alert_memory_hours,
            self.latest_lookback_hours,
        )


def check_connection_string(uri: str) -> None:
    """Raise :class:`ConfigError` naming ``MONGODB_URI`` when the driver cannot parse ``uri``.

    Parsed as ``MongoClient`` parses it (syntax, hosts, options; no DNS lookup
    for ``mongodb+srv``), so that a malformed string stops the function at cold
    start (contract §7) instead of failing every message as a store error.
    The driver's reason is kept only when it repeats nothing of the string's
    credentials (its texts name options and hosts, never values, but a
    password pasted unescaped can be read as a host or a port).
    """
    from pymongo.uri_parser_shared import _validate_uri  # what MongoClient runs on its URI, before any I/O

    try:
        _validate_uri(uri, validate=True, warn=True, normalize=False)
    except Exception as exc:  # InvalidURI, ConfigurationError, ValueError, TypeError: all mean "malformed"
        reason = str(exc)
        userinfo = uri.partition("://")[2].rpartition("@")[0]
        pieces = {p for p in (userinfo, *userinfo.split(":"), *unquote_plus(userinfo).split(":")) if len(p) >= 3}
        if any(piece in reason for piece in pieces):
            reason = "the driver's reason repeats part of the string; check its credentials are URL-escaped"
        raise ConfigError(
            "MONGODB_URI", f"is not a valid MongoDB connection string ({type(exc).__name__}: {reason})"
        ) from None


def check_embedded_store() -> None:
    """Raise :class:`ConfigError` naming ``MONGODB_URI`` when ``mongomock://`` cannot be served here.

    The embedded store and mongomock are local-run and test tools: the Lambda
    package holds neither, so a deployed ``mongomock://`` stops the cold start.
    """
    for module in (EMBEDDED_STORE_MODULE, "mongomock"):
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # a parent package is absent
            found = False
        if not found:
            raise ConfigError(
                "MONGODB_URI",
                f"mongomock:// selects the embedded store, which is not installed here ({module} is missing):"
                " it serves local runs and tests only; give a mongodb+srv:// connection string",
            )


def build_atlas_uri(host: str, user: str, password: str) -> str:
    """The ``mongodb+srv://`` URI for an Atlas host, credentials URL-escaped.

    ``mongodb+srv`` turns TLS on by default; it is also stated so that a reader
    of the URI (never logged) can see it.
    """
    return f"mongodb+srv://{quote_plus(user)}:{quote_plus(password)}@{host}/?tls=true&retryWrites=true&w=majority"


def _text(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def _connection(env: Mapping[str, str]) -> str:
    uri = _text(env, "MONGODB_URI")
    if uri is not None:
        if "://" not in uri:
            raise ConfigError("MONGODB_URI", "must be a connection string such as mongodb+srv://… or mongomock://")
        if uri.startswith(EMBEDDED_URI_SCHEME):
            check_embedded_store()
        else:
            check_connection_string(uri)
        return uri
    host = _text(env, "MONGODB_RSKYCLUSTER_HOST")
    user = _text(env, "MONGODB_RSKYCLUSTER_DATABASE_USER_NAME")
    password = env.get("MONGODB_RSKYCLUSTER_DATABASE_USER_PASSWORD") or None
    if host is None:
        raise ConfigError("MONGODB_RSKYCLUSTER_HOST", "is required when MONGODB_URI is not set")
    if any(ch in host for ch in "/@:?#") or any(ch.isspace() for ch in host):
        raise ConfigError("MONGODB_RSKYCLUSTER_HOST", "must be a bare host name such as cluster0.abcde.mongodb.net")
    if user is None:
        raise ConfigError("MONGODB_RSKYCLUSTER_DATABASE_USER_NAME", "is required when MONGODB_URI is not set")
    if password is None:
        raise ConfigError("MONGODB_RSKYCLUSTER_DATABASE_USER_PASSWORD", "is required when MONGODB_URI is not set")
    return build_atlas_uri(host, user, password)


def _data_api(env: Mapping[str, str]) -> dict[str, str]:
    key = env.get("MONGODB_RSKYCLUSTER_DATA_API_KEY") or None
    source = _text(env, "MONGODB_RSKYCLUSTER_DATA_SOURCE")
    url = _text(env, "MONGODB_DATA_API_URL")
    if url is None:
        region = _text(env, "MONGODB_RSKYCLUSTER_REGION")
        app_id = _text(env, "MONGODB_RSKYCLUSTER_DATA_API_APP_ID")
        if region is None:
            raise ConfigError(
                "MONGODB_RSKYCLUSTER_REGION", "is required by the data_api backend unless MONGODB_DATA_API_URL is set"
            )
        if app_id is None:
            raise ConfigError(
                "MONGODB_RSKYCLUSTER_DATA_API_APP_ID",
                "is required by the data_api backend unless MONGODB_DATA_API_URL is set",
            )
        url = f"https://{region}.aws.data.mongodb-api.com/app/{app_id}/endpoint/data/v1"
    elif not url.startswith(("https://", "http://")):
        raise ConfigError("MONGODB_DATA_API_URL", "must start with https:// (or http:// for a local endpoint)")
    if key is None:
        raise ConfigError("MONGODB_RSKYCLUSTER_DATA_API_KEY", "is required by the data_api backend")
    if source is None:
        raise ConfigError("MONGODB_RSKYCLUSTER_DATA_SOURCE", "is required by the data_api backend")
    return {"data_api_url": url.rstrip("/"), "data_api_key": key, "data_source": source}


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build and validate :class:`Settings` from ``env`` (default: ``os.environ``)."""
    env = os.environ if env is None else env
    uri = _connection(env)
    embedded = uri.startswith(EMBEDDED_URI_SCHEME)
    database = _text(env, "MONGODB_RSKYCLUSTER_DATABASE") or (EMBEDDED_DEFAULT_DATABASE if embedded else None)
    if database is None:
        raise ConfigError("MONGODB_RSKYCLUSTER_DATABASE", "is required")
    collection = _text(env, "MONGODB_RSKYCLUSTER_COINGECKO_ONCHAIN_SCORES_COLLECTION") or (
        EMBEDDED_DEFAULT_COLLECTION if embedded else None
    )
    if collection is None:
        raise ConfigError("MONGODB_RSKYCLUSTER_COINGECKO_ONCHAIN_SCORES_COLLECTION", "is required")
    values: dict[str, Any] = {item.name: _read(env, item) for item in fields(Settings) if "env" in item.metadata}
    if values["read_backend"] == "data_api":
        values.update(_data_api(env))
    return Settings(mongodb_uri=uri, database=database, collection=collection, **values)


def _read(env: Mapping[str, str], item: Field[Any]) -> Any:
    raw = _text(env, item.metadata["env"])
    return item.default if raw is None else item.metadata["parse"](item.metadata["env"], raw)


def default(name: str) -> Any:
    """The default of the :class:`Settings` field ``name`` (for objects built before the settings are read)."""
    return next(item.default for item in fields(Settings) if item.name == name)


_settings: Settings | None = None


def get_settings() -> Settings:
    """The container's settings, built from ``os.environ`` on first use (cold start)."""
    global _settings
    if _settings is None:
        _settings = load_settings()
    return _settings


def reset_settings() -> None:
    """Forget the cached settings (tests and local commands that change the environment)."""
    global _settings
    _settings = None
