"""The risk request: one SQS message body, validated into an immutable value.

Validation is strict on purpose (contract §3): producers get a rejection
naming the key and the reason instead of a silently coerced request, and
everything downstream trusts the :class:`RiskRequest` it is given.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from libs.errors import InvalidRequest
from libs.helpers.constants_helper import MAX_PERIOD_DAYS, SIGNALS, Settings
from libs.jsonvalues import is_unicode_text

MAX_COIN_IDS = 5_000
MAX_COIN_ID_CHARS = 256
MAX_REQUEST_ID_CHARS = 128
KEYS = ("coin_ids", "signals", "periods", "as_of", "since", "deviation_limit", "request_id")


@dataclass(frozen=True)
class RiskRequest:
    """A validated request. Datetimes are naive UTC, as pymongo returns them."""

    request_id: str
    coin_ids: tuple[str, ...] | None
    signals: tuple[str, ...]
    periods_days: tuple[int, ...]
    as_of: datetime
    since: datetime | None
    deviation_limit: float

    @property
    def mode(self) -> str:
        """``range`` for a backfill (``since`` given), else ``latest``."""
        return "latest" if self.since is None else "range"

    def judged_start(self, lookback_hours: int) -> tuple[datetime, bool]:
        """Earliest judged timestamp and whether it is inclusive.

        Latest mode judges ``as_of − lookback < t``; range mode ``since ≤ t``.
        """
        if self.since is None:
            return self.as_of - timedelta(hours=lookback_hours), False
        return self.since, True

    def history_start(self, lookback_hours: int, *, memory_hours: float = 0) -> datetime:
        """Exclusive lower bound of every timestamp any judged window can reach.

        With ``memory_hours`` (alerts on: ``ALERT_MEMORY_HOURS``), latest mode
        reaches that much further back: whether a judged observation raises its
        episode depends on the steps of that memory before it, each judged from
        its own trailing window (contract §9). Range mode publishes no alerts,
        so it never reaches further.
        """
        start, _ = self.judged_start(lookback_hours)
        if memory_hours and self.since is None:
            start -= timedelta(hours=memory_hours)
        return start - timedelta(days=max(self.periods_days))

    def describe(self) -> dict[str, Any]:
        """The request as JSON-friendly metadata for logs and traces."""
        return {
            "request_id": self.request_id,
            "mode": self.mode,
            "coins": len(self.coin_ids) if self.coin_ids is not None else "all",
            "signals": list(self.signals),
            "periods_days": list(self.periods_days),
            "as_of": self.as_of.isoformat(),
            "since": self.since.isoformat() if self.since else None,
            "deviation_limit": self.deviation_limit,
        }


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"key {key!r} appears twice")
        seen[key] = value
    return seen


def _decode(body: Any) -> dict[str, Any]:
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequest("body", "is not UTF-8 text") from None
    if not isinstance(body, str):
        raise InvalidRequest("body", f"must be a JSON text, got {type(body).__name__}")
    try:
        decoded = json.loads(body, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    except (ValueError, RecursionError) as exc:
        raise InvalidRequest("body", f"is not valid JSON ({_short(str(exc))})") from None
    if not isinstance(decoded, dict):
        raise InvalidRequest("body", f"must be a JSON object, got {_json_type(decoded)}")
    return decoded


_LONE_SURROGATE = "is not Unicode text (a lone surrogate escape such as \\ud800)"


def _check_unicode_keys(decoded: dict[str, Any]) -> None:
    """Refuse lone surrogates in keys: JSON lets ``"\\ud800"`` through; UTF-8, BSON and log lines cannot carry it.

    Such a key cannot be named in a log line, so the body is what is refused.
    """
    for key in decoded:
        if not is_unicode_text(key):
            raise InvalidRequest("body", f"has a key that {_LONE_SURROGATE}")


def _check_unicode_values(decoded: dict[str, Any]) -> None:
    """Refuse a value holding a lone surrogate anywhere, naming its key (a coin id or request id
    with one could not be sent to MongoDB or logged)."""
    for key, value in decoded.items():
        if not is_unicode_text(json.dumps(value, ensure_ascii=False)):
            raise InvalidRequest(key, f"holds a string that {_LONE_SURROGATE}")


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _list(body: dict[str, Any], key: str) -> list[Any]:
    value = body[key]
    if not isinstance(value, list):
        raise InvalidRequest(key, f"must be a list, got {_json_type(value)}")
    if not value:
        raise InvalidRequest(key, "must not be empty")
    return value


def _dedupe(values: list[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


def coin_id_problem(coin_id: str) -> str | None:
    """What is wrong with a coin id (contract §3), or None: non-empty text of at most 256 characters.

    The one rule, for request bodies and for the coins the tools take on their command line or from a file.
    """
    if not coin_id:
        return "must not be empty"
    if len(coin_id) > MAX_COIN_ID_CHARS:
        return f"is longer than {MAX_COIN_ID_CHARS} characters"
    if not is_unicode_text(coin_id):
        return "is not UTF-8 text"
    return None


def _coin_ids(body: dict[str, Any]) -> tuple[str, ...] | None:
    if "coin_ids" not in body:
        return None
    values = _list(body, "coin_ids")
    for position, value in enumerate(values):
        if not isinstance(value, str):
            raise InvalidRequest("coin_ids", f"entry {position} must be a string, got {_json_type(value)}")
        if (problem := coin_id_problem(value)) is not None:
            raise InvalidRequest("coin_ids", f"entry {position} {problem}")
    distinct = _dedupe(values)
    if len(distinct) > MAX_COIN_IDS:
        # Repeated entries count once (contract §3), so the limit is on distinct coins.
        raise InvalidRequest("coin_ids", f"must have at most {MAX_COIN_IDS} distinct entries, got {len(distinct)}")
    return tuple(distinct)


def known_signals(values: Sequence[Any]) -> tuple[str, ...]:
    """The signals ``values`` names, each once, in the order of :data:`SIGNALS` (contract §2).

    Raises :class:`InvalidRequest` (key ``signals``) naming the first entry
    that is not a signal's name. A request's ``signals`` and the report's
    ``--signals`` are both read with it.
    """
    for position, value in enumerate(values):
        if not isinstance(value, str) or value not in SIGNALS:
            shown = repr(value) if isinstance(value, str) else _json_type(value)
            raise InvalidRequest("signals", f"entry {position} ({_short(shown)}) is not one of {', '.join(SIGNALS)}")
    wanted = set(values)
    return tuple(signal for signal in SIGNALS if signal in wanted)


def _signals(body: dict[str, Any]) -> tuple[str, ...]:
    if "signals" not in body:
        return SIGNALS
    return known_signals(_list(body, "signals"))


def _periods(body: dict[str, Any], default: tuple[int, ...]) -> tuple[int, ...]:
    if "periods" not in body:
        return default
    values = _list(body, "periods")
    for position, value in enumerate(values):
        if type(value) is not int:
            raise InvalidRequest(
                "periods",
                f"entry {position} must be a JSON integer, got {_json_type(value)} {_short(json.dumps(value))}",
            )
        if not 1 <= value <= MAX_PERIOD_DAYS:
            raise InvalidRequest(
                "periods", f"entry {position} must be from 1 to {MAX_PERIOD_DAYS} days, got {_short(str(value))}"
            )
    return tuple(sorted(set(values)))


EARLIEST_MOMENT = datetime(1970, 1, 1)


def parse_moment(text: str, key: str, *, date_means_end_of_day: bool) -> datetime:
    """One ``as_of``/``since`` value read as contract §3 says, naive UTC.

    For other entry points that take the same formats (the report's
    ``--since``/``--as-of``); raises :class:`InvalidRequest` naming ``key``.
    """
    moment = _moment({key: text}, key, date_means_end_of_day)
    assert moment is not None
    return moment


def _moment(body: dict[str, Any], key: str, date_means_end_of_day: bool) -> datetime | None:
    moment = _parse_moment(body, key, date_means_end_of_day)
    if moment is not None and moment < EARLIEST_MOMENT:
        raise InvalidRequest(key, "must not be before 1970-01-01")
    return moment


def _parse_moment(body: dict[str, Any], key: str, date_means_end_of_day: bool) -> datetime | None:
    if key not in body:
        return None
    value = body[key]
    if not isinstance(value, str):
        raise InvalidRequest(key, f"must be an ISO-8601 date or datetime string, got {_json_type(value)}")
    text = value.strip()
    day = _date_only(text)
    if day is not None:
        return datetime.combine(day, time.max if date_means_end_of_day else time.min)
    if not _has_date_and_time_separator(text):
        raise InvalidRequest(key, f"is not an ISO-8601 date or datetime: {_short(value)!r}")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(key, f"is not an ISO-8601 date or datetime: {_short(value)!r}") from None
    if moment.tzinfo is not None:
        try:
            moment = moment.astimezone(UTC).replace(tzinfo=None)
        except OverflowError:
            raise InvalidRequest(key, f"is out of range: {_short(value)!r}") from None
    return moment


#: Lengths of the date part of an ISO-8601 datetime, longest first: ``2024-11-01``/``2024-W44-5``,
#: ``20241101``/``2024W445``/``2024-W44``, ``2024W44``.
_DATE_PART_CHARS = (10, 8, 7)


def _date_only(text: str) -> date | None:
    """The date ``text`` states when it is a date alone, extended or basic format (what ``date.fromisoformat`` reads)."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def _has_date_and_time_separator(text: str) -> bool:
    """Whether ``text`` is a date followed by ``T`` (or ``t``, or a space) and more.

    ``datetime.fromisoformat`` takes any character between date and time
    (``2024-11-01x12:00``); contract §3 asks for ISO-8601, so only these three pass.
    """
    for length in _DATE_PART_CHARS:
        if len(text) > length and text[length] in "Tt " and _date_only(text[:length]) is not None:
            return True
    return False


def _deviation_limit(body: dict[str, Any], default: float) -> float:
    if "deviation_limit" not in body:
        return default
    value = body["deviation_limit"]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidRequest("deviation_limit", f"must be a JSON number, got {_json_type(value)}")
    try:
        limit = float(value)
    except OverflowError:
        raise InvalidRequest("deviation_limit", "must be finite") from None
    if not math.isfinite(limit):
        raise InvalidRequest("deviation_limit", "must be finite")
    if limit <= 0:
        raise InvalidRequest("deviation_limit", f"must be above 0, got {_short(str(value))}")
    return limit


def _request_id(body: dict[str, Any], message_id: str) -> str:
    if "request_id" not in body:
        return message_id
    value = body["request_id"]
    if not isinstance(value, str):
        raise InvalidRequest("request_id", f"must be a string, got {_json_type(value)}")
    if len(value) > MAX_REQUEST_ID_CHARS:
        raise InvalidRequest("request_id", f"must be at most {MAX_REQUEST_ID_CHARS} characters, got {len(value)}")
    return value


def parse_request(body: Any, *, message_id: str, settings: Settings, now: datetime) -> RiskRequest:
    """Validate one SQS message body into a :class:`RiskRequest`.

    ``now`` (naive UTC) is the default ``as_of``; it is passed in so that
    validation stays a pure function. Raises :class:`InvalidRequest`.
    """
    decoded = _decode(body)
    _check_unicode_keys(decoded)
    unknown = sorted(set(decoded) - set(KEYS))
    if unknown:
        raise InvalidRequest(_short(unknown[0], 64), f"is not a known key (known: {', '.join(KEYS)})")
    _check_unicode_values(decoded)
    as_of = _moment(decoded, "as_of", date_means_end_of_day=True) or now
    since = _moment(decoded, "since", date_means_end_of_day=False)
    if since is not None:
        if since > as_of:
            raise InvalidRequest("since", f"must not be after as_of ({since.isoformat()} > {as_of.isoformat()})")
        if as_of - since > timedelta(days=settings.max_range_days):
            raise InvalidRequest(
                "since", f"must be at most {settings.max_range_days} days before as_of (ANOMALY_MAX_RANGE_DAYS)"
            )
    return RiskRequest(
        request_id=_request_id(decoded, message_id),
        coin_ids=_coin_ids(decoded),
        signals=_signals(decoded),
        periods_days=_periods(decoded, settings.periods_days),
        as_of=as_of,
        since=since,
        deviation_limit=_deviation_limit(decoded, settings.deviation_limit),
    )
