"""Processing one risk request: validate → load → judge → write (→ alerts).

This is the "process one request" function the handler calls for each SQS
record. It knows nothing of SQS: it takes a body, an id and a time budget
and either returns a :class:`~libs.summary.MessageSummary` or raises one of
:mod:`libs.errors`. Each step is wrapped by :func:`libs.summary.step` (an
X-Ray subsegment and a timing); reporting the message is
:func:`libs.summary.report`'s job.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from pymongo.collection import Collection

from libs.deadline import NO_DEADLINE, Deadline
from libs.errors import StoreUnreachable
from libs.helpers.constants_helper import Settings
from libs.helpers.mongodb_helper import Reader, build_updates, get_collection, load_history, write_updates
from libs.helpers.store_budget import store_budget
from libs.models.history import History
from libs.models.model import ModelParams, SortedRows, concat_results, judged_mask, signal_judges, sort_rows
from libs.observability import annotate, message_segment, service_name, tag_request
from libs.request import RiskRequest, parse_request
from libs.summary import MessageSummary, report, signal_step, step


def utc_now() -> datetime:
    """Naive UTC now at millisecond precision, as MongoDB stores dates."""
    now = datetime.now(UTC).replace(tzinfo=None)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def stale_coins(request: RiskRequest, judged_coins: np.ndarray) -> list[str]:
    """Requested coins with no observation to judge (latest mode only)."""
    if request.mode != "latest" or request.coin_ids is None:
        return []
    found = set(judged_coins.tolist())
    return [coin for coin in request.coin_ids if coin not in found]


def alerts_reserve_s(settings: Settings) -> float:
    """The alerts step's worst case (contract §10), 0 with alerts off.

    With alerts on, a message is started only when the time left covers
    ``ANOMALY_TIME_MARGIN_MS`` plus this, and its store operations must end
    this long before its deadline: a started message never writes its flags
    and then runs out of time to publish them.
    """
    if not settings.alerts_enabled:
        return 0.0
    from libs.alerts.publish import worst_case_s  # with alerts off nothing of them is imported (contract §10)

    return worst_case_s(settings.alert_max_per_message)


def process_message(
    body: Any,
    message_id: str,
    settings: Settings,
    *,
    deadline: Deadline = NO_DEADLINE,
    outage: StoreUnreachable | None = None,
    now: datetime | None = None,
    reader: Reader | None = None,
    collection: Collection | None = None,
) -> MessageSummary:
    """Validate, load, judge and write one message (then publish its alerts). Raises a :mod:`libs.errors` error.

    Every store operation (load and write) is bounded by ``deadline``
    (:func:`~libs.helpers.store_budget.store_budget`), less the alerts step's
    worst case when alerts will run, so a slow store fails the message with
    :class:`~libs.errors.StoreTimeout` before the invocation's deadline. An
    ``outage`` found by an earlier message of the batch fails this one once
    its body is validated (an invalid body is still rejected for what it is).
    Traced as a ``## message`` subsegment holding one subsegment per step,
    and inside ``## model`` one per signal; MongoDB commands nest under
    ``## load`` and ``## write``.
    """
    now = now or utc_now()
    summary = MessageSummary(message_id=message_id)
    with message_segment(message_id) as segment:
        with step(summary, "validate") as validate:
            request = parse_request(body, message_id=message_id, settings=settings, now=now)
            summary.request_id, summary.mode, summary.request = request.request_id, request.mode, request.describe()
            annotate(validate, **summary.labels)
        tag_request(request.request_id)
        annotate(segment, **summary.labels)
        segment.put_metadata("request", summary.request, service_name())
        alerting = settings.alerts_enabled and request.mode == "latest"  # a backfill pages nobody (contract §10)
        store_deadline = deadline.earlier_by(alerts_reserve_s(settings)) if alerting else deadline

        with step(summary, "load") as load, store_budget(store_deadline):
            if outage is not None:
                raise StoreUnreachable(f"not started: the database was unreachable for an earlier message ({outage})")
            history = load_history(request, settings, reader)
            summary.documents_read, summary.documents_skipped = history.read, history.skipped
            annotate(load, documents_read=history.read, documents_skipped=history.skipped)

        params = ModelParams(request.signals, request.periods_days, request.deviation_limit, settings.min_observations)
        with step(summary, "model") as model:
            judged, rows, results = judge(request, history, params, settings, summary)
            annotate(model, observations=summary.observations_judged, anomalies=summary.anomalies_total)

        with step(summary, "write") as write, store_budget(store_deadline):
            updates = build_updates(history.frame, np.flatnonzero(judged), results, evaluated_at=now)
            target = collection if collection is not None else get_collection(settings)
            summary.documents_written = write_updates(target, updates)
            annotate(write, documents_written=summary.documents_written)

        if alerting:
            from libs.alerts import publish_alerts_for  # with alerts off nothing of them is imported (contract §10)

            with step(summary, "alerts") as alerts:
                outcome = publish_alerts_for(history.frame, rows, params, results, request, settings, deadline=deadline)
                summary.alerts_published, summary.alerts_withheld = outcome.published, outcome.withheld
                annotate(alerts, alerts_published=outcome.published, alerts_withheld=outcome.withheld)

        annotate(
            segment,
            coins=summary.coins_judged,
            observations=summary.observations_judged,
            anomalies=summary.anomalies_total,
        )
    return summary


def judge(
    request: RiskRequest, history: History, params: ModelParams, settings: Settings, summary: MessageSummary
) -> tuple[np.ndarray, SortedRows | None, pd.DataFrame]:
    """The judged mask, the rows the model sorted (None when nothing is judged) and its results, signal by
    signal, counted into ``summary``."""
    frame = history.frame
    judged = judged_mask(
        frame,
        as_of=request.as_of,
        since=request.since,
        lookback_hours=settings.latest_lookback_hours,
        coin_ids=request.coin_ids,
    )
    rows = sort_rows(frame, judged, params.periods_days)
    blocks = []
    for signal, judge_one in signal_judges(frame, rows, params):
        with signal_step(summary, signal) as traced_signal:
            block = judge_one()
            observations = int(np.count_nonzero(judged & frame[signal].notna().to_numpy()))
            anomalies = int(block["is_anomaly"].fillna(False).sum())
            annotate(traced_signal, observations=observations, anomalies=anomalies)
        summary.signal_observations[signal] = observations
        summary.signal_anomalies[signal] = anomalies
        blocks.append(block)
    results = concat_results(blocks)

    judged_rows = np.flatnonzero(judged)
    judged_coins = frame["coin_id"].to_numpy()[judged_rows]
    summary.observations_judged = len(judged_rows)
    summary.coins_judged = len(set(judged_coins.tolist()))
    summary.stale_coins = stale_coins(request, judged_coins)
    flagged = results[results["is_anomaly"].fillna(False).astype(bool)]
    counts = Counter(zip(flagged["signal"], flagged["period_days"]))
    summary.anomalies = {f"{signal}.{period}d": count for (signal, period), count in sorted(counts.items())}
    return judged, rows, results


def process_and_report(
    body: Any,
    message_id: str,
    settings: Settings,
    deadline: Deadline = NO_DEADLINE,
    outage: StoreUnreachable | None = None,
) -> MessageSummary:
    """:func:`process_message`, then its summary line and metrics: what the handler runs per record."""
    summary = process_message(body, message_id, settings, deadline=deadline, outage=outage)
    report(summary)
    return summary
