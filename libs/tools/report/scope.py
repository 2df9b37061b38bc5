"""What a report covers: its period and filters, validated into an immutable value.

The dates take the formats of contract §3 (read by the request's own
parser, so a date means the same thing to the report as to the function);
``--periods`` is read as ``ANOMALY_PERIODS`` is (one parser of comma-separated
days) and ``--signals`` as a request's ``signals`` are. Every mistake raises
:class:`ReportArgumentError`, which the command turns into exit status 2.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from libs.errors import AnomalyServiceError, ConfigError, InvalidRequest
from libs.helpers.constants_helper import SIGNALS, day_list
from libs.request import coin_id_problem, known_signals, parse_moment

#: ``since`` when it is not given: a week before ``as_of`` (contract §11).
DEFAULT_DAYS = 7


class ReportArgumentError(AnomalyServiceError):
    """A report argument that cannot be used; the message names the argument."""


@dataclass(frozen=True)
class ReportScope:
    """The observations a report reads: stamped in ``[since, as_of]`` (naive UTC), filtered.

    ``coin_ids`` None means every coin; ``periods_days`` None means every
    window stored. ``signals`` is never empty (all seven by default).
    """

    since: datetime
    as_of: datetime
    coin_ids: tuple[str, ...] | None
    signals: tuple[str, ...]
    periods_days: tuple[int, ...] | None

    def describe(self) -> dict[str, str]:
        """The period and the filters in words, for the page and the summary line."""
        return {
            "coins": "all" if self.coin_ids is None else ", ".join(self.coin_ids),
            "signals": "all" if self.signals == SIGNALS else ", ".join(self.signals),
            "windows": "all stored" if self.periods_days is None else ", ".join(f"{p}-day" for p in self.periods_days),
        }


def _moment(text: str | None, option: str, *, end_of_day: bool) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_moment(text, option, date_means_end_of_day=end_of_day)
    except InvalidRequest as exc:
        raise ReportArgumentError(f"{option} {exc.reason}") from None


def _floor_ms(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _ceil_ms(moment: datetime) -> datetime:
    floor = _floor_ms(moment)
    return floor if floor == moment else floor + timedelta(milliseconds=1)


def _signals(signals: Sequence[str] | None) -> tuple[str, ...]:
    if not signals:
        return SIGNALS
    try:
        return known_signals(signals)
    except InvalidRequest as exc:
        raise ReportArgumentError(f"--signals: {exc.reason}") from None


def _periods(periods: str | None) -> tuple[int, ...] | None:
    if not periods:
        return None
    try:
        return day_list("--periods", periods)
    except ConfigError as exc:
        raise ReportArgumentError(f"--periods {exc.reason}") from None


def report_scope(
    *,
    now: datetime,
    since: str | None = None,
    as_of: str | None = None,
    coin_ids: Sequence[str] | None = None,
    signals: Sequence[str] | None = None,
    periods: str | None = None,
) -> ReportScope:
    """Validate the command's arguments (texts as typed; coins and signals split) into a :class:`ReportScope`.

    ``now`` (naive UTC) is the default ``as_of``, passed in to keep this pure.
    ``since`` defaults to ``as_of`` − 7 days and must not be after ``as_of``;
    unlike a request, the report sets no limit on the span (it writes nothing).
    """
    end = _moment(as_of, "--as-of", end_of_day=True) or now
    start = _moment(since, "--since", end_of_day=False) or end - timedelta(days=DEFAULT_DAYS)
    if start > end:
        raise ReportArgumentError(f"--since must not be after --as-of ({start.isoformat()} > {end.isoformat()})")
    # BSON keeps milliseconds: bounds rounded inwards to the millisecond select exactly what the given ones
    # do, and read better: the week to 2024-11-01 (23:59:59.999999) runs from 2024-10-26 00:00:00.000.
    start, end = _ceil_ms(start), _floor_ms(end)
    coins = None
    if coin_ids is not None:
        coins = tuple(dict.fromkeys(c for c in coin_ids if c))
        if not coins:
            raise ReportArgumentError("--coins / --coins-file: no coin ids given")
        for coin in coins:
            if (problem := coin_id_problem(coin)) is not None:
                raise ReportArgumentError(f"--coins / --coins-file: {coin[:40]!r} {problem}")
    return ReportScope(
        since=start, as_of=end, coin_ids=coins, signals=_signals(signals), periods_days=_periods(periods)
    )
