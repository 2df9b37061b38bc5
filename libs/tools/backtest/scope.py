"""What a backtest covers: its period and filters, validated into an immutable value.

The report's parser reads the dates, coins, signals and periods (contract §3's
formats, the same lists), so a date means the same thing to every tool; the
backtest differs only in its defaults: ``since`` is 30 days before ``as_of``,
and the windows are ``ANOMALY_PERIODS`` (what the function judges), not
"every window stored". Like the report, it sets no limit on the span:
``ANOMALY_MAX_RANGE_DAYS`` bounds messages, and the backtest writes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from libs.errors import AnomalyServiceError
from libs.tools.report.scope import report_scope

#: ``since`` when it is not given: 30 days before ``as_of`` (contract §12).
DEFAULT_DAYS = 30


class BacktestArgumentError(AnomalyServiceError):
    """A backtest argument that cannot be used (the message names it); the command exits 2."""

    kind = "argument"
    caller_fault = True


@dataclass(frozen=True)
class BacktestScope:
    """The observations whose alerts a backtest reports: stamped in ``[since, as_of]`` (naive UTC), filtered.

    ``coin_ids`` None means every coin; ``signals`` and ``periods_days`` are
    never empty (all seven signals and ``ANOMALY_PERIODS`` by default).
    """

    since: datetime
    as_of: datetime
    coin_ids: tuple[str, ...] | None
    signals: tuple[str, ...]
    periods_days: tuple[int, ...]
    #: Whether ``--signals`` named the signals (a file then must hold them all) or they are the default.
    signals_given: bool = False


def backtest_scope(
    *,
    now: datetime,
    default_periods: tuple[int, ...],
    since: str | None = None,
    as_of: str | None = None,
    coin_ids: Sequence[str] | None = None,
    signals: Sequence[str] | None = None,
    periods: str | None = None,
) -> BacktestScope:
    """Validate the command's arguments (texts as typed) into a :class:`BacktestScope`.

    ``now`` (naive UTC) is the default ``as_of``, passed in to keep this pure;
    ``default_periods`` is ``ANOMALY_PERIODS``. Raises an
    :class:`~libs.errors.AnomalyServiceError` naming the argument.
    """
    scope = report_scope(now=now, since=since, as_of=as_of, coin_ids=coin_ids, signals=signals, periods=periods)
    start = scope.since if since is not None else scope.as_of - timedelta(days=DEFAULT_DAYS)
    return BacktestScope(
        since=start,
        as_of=scope.as_of,
        coin_ids=scope.coin_ids,
        signals=scope.signals,
        periods_days=scope.periods_days or default_periods,
        signals_given=bool(signals),
    )
