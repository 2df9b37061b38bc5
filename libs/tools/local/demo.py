"""The demo: the whole system on one machine, as it runs in AWS, and a report of what happened.

moto's SQS server on loopback with the queue and DLQ of ``serverless.yml``;
the embedded store seeded with the real market history of 2022 from
``data/`` (CoinGecko daily prices, volumes and market caps, contract §13) and
with synthetic coins that carry planted spikes and dips and some missing
values. Requests: for the real coins, one latest-mode message for every day of
each known 2022 event of ``data/events.csv`` (Terra/LUNA, the Celsius freeze,
FTX/FTT), as an hourly producer would have sent them then; for the synthetic
coins, a latest-mode request and a 7-day backfill; and a few invalid messages.
The poller feeds them to ``handler.handler`` until the queue is drained, with
alerts going to a local SNS topic. The report checks that every message is
accounted for (processed, or dead-lettered after ``maxReceiveCount``
receives), counts the anomalies, measures recall on the planted ones, shows
the alerts received for each event, plots LUNA's price through 2022 and
writes the analysts' page over the events' period.

The queue's visibility timeout is the one thing changed from
``serverless.yml`` (1 s instead of 6 × 120 s), so that a failed message is
redelivered, and finally dead-lettered, within seconds.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from pymongo.collection import Collection

from libs.helpers.constants_helper import SIGNALS, Settings
from libs.helpers.mongodb_helper import ensure_indexes
from libs.models.history import documents_to_history
from libs.tools.local.alerts_inbox import alert_line, local_alerts, ranked, received_alerts
from libs.tools.local.poller import Poller, PollStats
from libs.tools.local.producer import request_bodies, send_bodies
from libs.tools.local.queue_settings import QueueSettings, load_queue_settings
from libs.tools.local.sqs_endpoint import LocalSqsEndpoint, create_queues, peek_messages, queue_counts, sqs_client
from libs.tools.market_data import (
    EVENTS_CSV,
    MARKET_CSV,
    MarketDataError,
    MarketEvent,
    market_documents,
    read_events,
)
from libs.tools.plot import PlotSummary, plot_signal
from libs.tools.report.entries import documents_to_entries, flagged_rows
from libs.tools.scores_csv import read_scores_csv
from libs.tools.synthetic import Planted, synthetic_documents

#: Bodies the function must reject; each ends in the DLQ after maxReceiveCount receives.
INVALID_BODIES = (
    "this is not JSON",
    json.dumps({"request_id": "demo-invalid-period", "periods": [3.0]}),
    json.dumps({"request_id": "demo-invalid-key", "coin_ids": ["coin-0000"], "colour": "red"}),
    json.dumps({"request_id": "demo-invalid-range", "since": "2022-01-01", "as_of": "2022-11-01"}),
)
#: Whatever happens, the poller stops after this long (a safety net; a demo run takes seconds).
POLL_LIMIT_SECONDS = 180
#: The real market history the demo seeds (contract §8): the year 2022 of data/.
MARKET_YEAR = 2022
#: The event whose coin's price the demo plots, and the window (the 30-day one judges a daily series best).
PLOTTED_EVENT, PLOTTED_SIGNAL, PLOTTED_PERIOD_DAYS = "Terra LUNA/UST collapse", "latest_price", 30
#: The events the report page covers, from the first one's onset to the last one's end (contract §8).
REPORTED_EVENTS = ("Terra LUNA/UST collapse", "FTX/FTT collapse")


@dataclass(frozen=True)
class DemoOptions:
    coins: int = 50
    days: int = 35
    per_day: int = 4
    seed: int = 7
    coins_per_message: int = 10
    visibility_timeout_seconds: int = 1
    out_dir: Path = Path("out")
    verbose: bool = False
    #: The real coins to seed from ``market_data`` (None: every coin with rows in 2022).
    market_coins: tuple[str, ...] | None = None
    market_data: Path = MARKET_CSV
    events: Path = EVENTS_CSV


@dataclass(frozen=True)
class Replay:
    """One known event the demo replays: a latest-mode message for the real coins at each of its days."""

    event: MarketEvent
    moments: tuple[datetime, ...]


@dataclass
class DemoReport:
    """Everything the closing report prints; the counts are measured, never assumed."""

    endpoint_url: str = ""
    queue: QueueSettings | None = None
    visibility_timeout_seconds: int = 0
    documents: int = 0
    market_documents: int = 0
    market_coins: list[str] = field(default_factory=list)
    coins: int = 0
    missing_values: int = 0
    planted: int = 0
    replays: list[Replay] = field(default_factory=list)
    sent_market_latest: int = 0
    sent_latest: int = 0
    sent_backfill: int = 0
    sent_invalid: int = 0
    sent_ids: list[str] = field(default_factory=list)
    rejected_by_sqs: int = 0
    poll: PollStats = field(default_factory=PollStats)
    processed: int = 0
    dead_lettered: list[tuple[str, str, str]] = field(default_factory=list)
    left_on_queue: int = 0
    anomalies: Counter = field(default_factory=Counter)
    planted_found: int = 0
    judged_values: int = 0
    unplanted_flags: int = 0
    plot: PlotSummary | None = None
    plot_reason: str = ""
    report_page: Path | None = None
    report_period: str = ""
    report_summary: str = ""
    report_top: list[dict[str, Any]] = field(default_factory=list)
    alerts_topic: str = ""
    alerts: list[dict[str, Any]] = field(default_factory=list)
    function_log: Path | None = None
    seconds: float = 0.0

    @property
    def sent(self) -> int:
        return len(self.sent_ids)

    @property
    def accounted(self) -> bool:
        """Every message sent was processed or dead-lettered, and nothing is left on the queue."""
        return self.processed + len(self.dead_lettered) == self.sent and self.left_on_queue == 0


@dataclass
class FlagTally:
    """The flags written in the store, read back."""

    by_signal_period: Counter = field(default_factory=Counter)
    flagged_points: set[tuple[str, datetime, str]] = field(default_factory=set)
    judged_by_coin: Counter = field(default_factory=Counter)


def tally_flags(collection: Collection) -> FlagTally:
    """Count ``is_anomaly: true`` entries by signal and period, the judged values by coin, and the flagged points."""
    documents = collection.find({"anomalies": {"$exists": True}}, {"coin_id": 1, "timestamp": 1, "anomalies": 1})
    entries = documents_to_entries(documents, SIGNALS, with_ids=True).frame
    hits = entries[flagged_rows(entries)]
    coins, signals = hits["coin_id"].tolist(), hits["signal"].tolist()
    periods = [f"{period}d" for period in hits["period_days"].tolist()]
    stamps = hits["timestamp"].to_numpy().astype("datetime64[us]").tolist()  # datetimes, as stored
    judged = entries[["_id", "signal", "coin_id"]].drop_duplicates()
    return FlagTally(
        by_signal_period=Counter(zip(signals, periods)),
        flagged_points=set(zip(coins, stamps, signals)),
        judged_by_coin=Counter(judged["coin_id"].tolist()),
    )


class ProgressLine:
    """One line on stderr, rewritten in place on a terminal, at most once a second otherwise."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._last = 0.0

    def show(self, text: str) -> None:
        now = time.monotonic()
        if self._tty:
            self._stream.write(f"\r\033[K{text}")
        elif now - self._last >= 1.0:
            self._stream.write(f"{text}\n")
        else:
            return
        self._last = now
        self._stream.flush()

    def done(self, text: str) -> None:
        self._stream.write(f"\r\033[K{text}\n" if self._tty else f"{text}\n")
        self._stream.flush()


@contextmanager
def function_log_to(path: Path | None) -> Iterator[None]:
    """Send the function's output to ``path`` (None leaves it where it goes: stderr and stdout).

    The function writes JSON log lines through its logger and EMF metric
    blobs to standard output, as in Lambda, where both end in its log group;
    here both go to the one log file, so the demo's standard output is its report.
    """
    if path is None:
        yield
        return
    from libs.observability import logs_to

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as log_file, logs_to(log_file), contextlib.redirect_stdout(log_file):
        yield


def failure_reasons(log_path: Path | None) -> dict[str, str]:
    """The last failure reason the function logged for each messageId."""
    reasons: dict[str, str] = {}
    if log_path is None or not log_path.exists():
        return reasons
    for line in log_path.read_text().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("message_id") and entry.get("reason"):
                reasons[entry["message_id"]] = entry["reason"]
    return reasons


def _count_missing(documents: list[dict[str, Any]]) -> int:
    frame = documents_to_history(documents, SIGNALS).frame
    return int(frame[list(SIGNALS)].isna().to_numpy().sum())


def _recall(planted: list[Planted], tally: FlagTally, coins: set[str]) -> tuple[int, int, int]:
    """Among the synthetic ``coins``: (planted points flagged in some window, flags on unplanted points, values judged)."""
    planted_points = {(p.coin_id, p.timestamp, p.signal) for p in planted}
    flagged = {point for point in tally.flagged_points if point[0] in coins}
    judged = sum(count for coin, count in tally.judged_by_coin.items() if coin in coins)
    return len(planted_points & flagged), len(flagged - planted_points), judged


def market_history(options: DemoOptions) -> tuple[list[dict[str, Any]], list[str]]:
    """The documents of the year the demo seeds (``MARKET_YEAR``), read with the score CSV reader, and their coins."""
    frame = read_scores_csv(options.market_data)
    stamps = frame["timestamp"]
    keep = ((stamps >= datetime(MARKET_YEAR, 1, 1)) & (stamps < datetime(MARKET_YEAR + 1, 1, 1))).to_numpy()
    if options.market_coins is not None:
        keep = keep & frame["coin_id"].isin(list(options.market_coins)).to_numpy()
    year = frame[keep].reset_index(drop=True)
    coins = sorted(set(year["coin_id"]))
    absent = sorted(set(options.market_coins or ()) - set(coins))
    if absent:
        raise MarketDataError(f"{options.market_data}: no rows of {', '.join(map(repr, absent))} in {MARKET_YEAR}")
    return market_documents(year), coins


def replays(events: list[MarketEvent], coins: list[str]) -> list[Replay]:
    """The events of ``MARKET_YEAR`` on a seeded coin, each with its days: onset, onset + 1 day, … up to its end.

    The data holds one observation a day at 00:00 UTC, so each moment is the
    time of one row: a latest-mode request ``as_of`` it judges that row, as
    the hourly producer would have when it arrived.
    """
    seeded = set(coins)
    chosen = []
    for event in events:
        if event.onset.year != MARKET_YEAR or not seeded.intersection(event.coin_ids):
            continue
        days = int(event.hours // 24)
        chosen.append(Replay(event, tuple(event.onset + timedelta(days=day) for day in range(days + 1))))
    return chosen


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def run_demo(
    options: DemoOptions,
    collection: Collection,
    settings: Settings,
    *,
    progress: ProgressLine | None = None,
    handler: Callable[[dict[str, Any], Any], Any] | None = None,
) -> DemoReport:
    """Run the whole pipeline on ``collection`` (the embedded store) and report what happened.

    Raises :class:`~libs.tools.scores_csv.MalformedCsv` or
    :class:`~libs.tools.market_data.MarketDataError` when the market data or
    its events cannot be read (the command prints one ``error:`` line).
    """
    started = time.monotonic()
    queue = load_queue_settings()
    report = DemoReport(queue=queue, visibility_timeout_seconds=options.visibility_timeout_seconds)
    market, report.market_coins = market_history(options)
    report.replays = replays(read_events(options.events), report.market_coins)
    # the synthetic coins' history ends with the market year, on their own grid of per_day observations
    synthetic_end = datetime(MARKET_YEAR + 1, 1, 1) - timedelta(days=1) / options.per_day
    documents, planted = synthetic_documents(
        coins=options.coins, days=options.days, per_day=options.per_day, seed=options.seed, end=synthetic_end
    )
    collection.insert_many(market + documents)
    ensure_indexes(collection)
    report.documents, report.market_documents = len(market) + len(documents), len(market)
    report.coins, report.planted = options.coins, len(planted)
    report.missing_values = _count_missing(documents)
    as_of = max(doc["timestamp"] for doc in documents)
    report.function_log = None if options.verbose else options.out_dir / "demo-function.log"

    with LocalSqsEndpoint() as endpoint, function_log_to(report.function_log), ExitStack() as alerts_on:
        report.endpoint_url = endpoint.url
        client = sqs_client(endpoint.url)
        inbox = alerts_on.enter_context(local_alerts(endpoint.url, client))  # contract §10, on moto's SNS
        queues = create_queues(client, queue, visibility_timeout_seconds=options.visibility_timeout_seconds)
        coins = sorted({doc["coin_id"] for doc in documents})
        market_latest = [
            json.dumps(
                {"as_of": _iso(moment), "request_id": f"demo-market-{moment:%Y-%m-%d}", "coin_ids": report.market_coins}
            )
            for moment in sorted({moment for replay in report.replays for moment in replay.moments})
        ]
        latest = request_bodies(
            coins, options.coins_per_message, {"as_of": as_of.isoformat(), "request_id": "demo-latest"}
        )
        backfill = request_bodies(
            coins,
            options.coins_per_message,
            {
                "since": (as_of - timedelta(days=7)).isoformat(),
                "as_of": as_of.isoformat(),
                "request_id": "demo-backfill",
            },
        )
        # the invalid ones first: their redrive cycles then overlap the valid messages' processing
        sent = send_bodies(client, queues.url, list(INVALID_BODIES) + market_latest + latest + backfill)
        report.sent_ids, report.rejected_by_sqs = sent.message_ids, len(sent.rejected)
        report.sent_market_latest, report.sent_latest = len(market_latest), len(latest)
        report.sent_backfill, report.sent_invalid = len(backfill), len(INVALID_BODIES)

        def on_batch(stats: PollStats) -> None:
            if progress is not None:
                dlq = queue_counts(client, queues.dlq_url).visible
                progress.show(
                    f"polling: {stats.batches} batches, {stats.received} deliveries, "
                    f"{stats.succeeded} processed, {stats.failed} failed (left for redrive), "
                    f"{dlq} in the DLQ"
                )

        poller = Poller(
            client,
            queues.url,
            handler=handler,
            batch_size=queue.batch_size,
            batching_window_seconds=queue.maximum_batching_window_seconds,
            function_timeout_ms=queue.function_timeout_ms,
            on_batch=on_batch,
        )
        report.poll = poller.run(until_empty=True, max_seconds=POLL_LIMIT_SECONDS)
        if progress is not None:
            progress.done(f"polling done: {report.poll.stopped}")
        sent_ids = set(report.sent_ids)
        report.processed = len(set(report.poll.deleted_message_ids) & sent_ids)
        reasons = failure_reasons(report.function_log)
        report.dead_lettered = [
            (m["MessageId"], m["Body"], reasons.get(m["MessageId"], ""))
            for m in peek_messages(client, queues.dlq_url)
            if m["MessageId"] in sent_ids
        ]
        counts = queue_counts(client, queues.url)
        report.left_on_queue = counts.visible + counts.in_flight + counts.delayed
        report.alerts_topic, report.alerts = inbox.topic_arn, received_alerts(client, inbox.queue_url)

    tally = tally_flags(collection)
    report.anomalies = tally.by_signal_period
    report.planted_found, report.unplanted_flags, report.judged_values = _recall(planted, tally, set(coins))
    _write_plot(report, collection, settings, options.out_dir)
    _write_report(report, collection, settings, options.out_dir / "report")
    report.seconds = time.monotonic() - started
    return report


def _write_plot(report: DemoReport, collection: Collection, settings: Settings, out_dir: Path) -> None:
    """LUNA's price through the market year with its 30-day fences (or, without it, the first replayed coin's)."""
    replay = next((r for r in report.replays if r.event.name == PLOTTED_EVENT), None) or next(
        iter(report.replays), None
    )
    if replay is None:
        return
    coin_id = next(coin for coin in replay.event.coin_ids if coin in report.market_coins)
    report.plot = plot_signal(
        collection,
        coin_id=coin_id,
        signal=PLOTTED_SIGNAL,
        period_days=PLOTTED_PERIOD_DAYS,
        out=out_dir / f"demo-{coin_id}-{PLOTTED_SIGNAL}-{PLOTTED_PERIOD_DAYS}d.png",
        deviation_limit=settings.deviation_limit,
        min_observations=settings.min_observations,
        title=f"{coin_id} {PLOTTED_SIGNAL}, {PLOTTED_PERIOD_DAYS}-day fences, {MARKET_YEAR} (market data: CoinGecko)",
    )
    report.plot_reason = f"the {replay.event.name}, flags as written on the days the demo judged"


def _report_scope_of(report: DemoReport) -> tuple[datetime, datetime, str] | None:
    """The report's period: the reported events' span (first onset to last end), and what it covers."""
    reported = [r.event for r in report.replays if r.event.name in REPORTED_EVENTS] or [r.event for r in report.replays]
    if not reported:
        return None
    reported.sort(key=lambda e: e.onset)
    since, as_of = reported[0].onset, max(e.end for e in reported)
    names = " to the ".join(e.name for e in reported)
    return since, as_of, f"from the {names}" if len(reported) > 1 else f"the {names}"


def _write_report(report: DemoReport, collection: Collection, settings: Settings, out_dir: Path) -> None:
    """The analysts' report (contract §11) over the reported events' period, every coin judged then.

    Not filtered: on the severity scale of contract §9 the collapses rank
    first among everything the demo judged in that period, as they should.
    """
    from libs.helpers.mongodb_helper import DriverReader
    from libs.processor import utc_now
    from libs.tools.report.build import write_report
    from libs.tools.report.scope import report_scope

    chosen = _report_scope_of(report)
    if chosen is None:
        return
    since, as_of, what = chosen
    scope = report_scope(now=as_of, since=_iso(since), as_of=_iso(as_of))
    result = write_report(
        scope,
        settings,
        out_dir,
        reader=DriverReader(collection),
        collection=collection,
        generated_at=utc_now(),
        credit="market data: CoinGecko, for the real coins",
    )
    report.report_page, report.report_summary = result.page, result.summary_line(scope)
    report.report_period = f"{since:%Y-%m-%d} to {as_of:%Y-%m-%d}, {what}; every coin"
    report.report_top = json.loads(result.episodes_file.read_text())[:5]


def _table(rows: list[list[Any]], header: list[str]) -> str:
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def alerts_by_event(report: DemoReport) -> tuple[list[tuple[Replay, list[dict[str, Any]]]], list[dict[str, Any]]]:
    """The alerts received for each replayed event (its coins, stamped in its span, in time order), and the rest."""
    grouped = []
    claimed: set[int] = set()
    for replay in report.replays:
        mine = [
            (i, alert)
            for i, alert in enumerate(report.alerts)
            if replay.event.covers(alert["coin_id"], datetime.strptime(alert["timestamp"][:19], "%Y-%m-%dT%H:%M:%S"))
        ]
        claimed.update(i for i, _ in mine)
        by_time = sorted(
            (a for _, a in mine), key=lambda a: (a["timestamp"], a["coin_id"], a["signal"], a["direction"])
        )
        grouped.append((replay, by_time))
    return grouped, [alert for i, alert in enumerate(report.alerts) if i not in claimed]


def _alert_lines(report: DemoReport) -> list[str]:
    """The alerts the local topic's queue received: each replayed event's, then the top five of the others."""
    topic = report.alerts_topic.rsplit(":", 1)[-1]
    lines = [f"alerts received on the local SNS topic {topic} (via its subscribed queue): {len(report.alerts)}"]
    grouped, others = alerts_by_event(report)
    for replay, alerts in grouped:
        event = replay.event
        lines.append(
            f"  {event.name} ({' '.join(event.coin_ids)}; {event.onset:%Y-%m-%d} to {event.end:%Y-%m-%d}): "
            f"{len(alerts)} alert{'' if len(alerts) == 1 else 's'}"
        )
        lines += [f"    {alert_line(alert)}" for alert in alerts]
    if others:
        lines.append(f"  the other {len(others)}, the top five by severity:")
        lines += [f"    {alert_line(alert)}" for alert in ranked(others)[:5]]
    return lines


def _episode_line(episode: dict[str, Any]) -> str:
    peak = episode["peak_timestamp"][:16].replace("T", " ")
    severity = episode["peak_severity"]
    return (
        f"{episode['coin_id']} {episode['signal']} {episode['period_days']}-day {episode['direction']}, "
        f"{episode['start'][:10]} to {episode['end'][:10]} ({episode['observations']} flagged), "
        f"peak {episode['peak_value']:.6g} at {peak}, "
        + ("severity unknown" if severity is None else f"severity {severity:.1f}")
    )


def format_report(report: DemoReport) -> str:
    """The closing report, as the demo prints it."""
    queue = report.queue
    assert queue is not None
    moments = sum(len(r.moments) for r in report.replays)
    replayed = "; ".join(f"{r.event.name} {r.moments[0]:%m-%d}..{r.moments[-1]:%m-%d}" for r in report.replays)
    lines = [
        f"local SQS (moto) at {report.endpoint_url}: {queue.request_queue_name} -> {queue.dead_letter_queue_name}",
        f"  from deploy/queue.yml: function timeout {queue.function_timeout_seconds} s, maxReceiveCount "
        f"{queue.max_receive_count}, batch size {queue.batch_size}; visibility timeout {report.visibility_timeout_seconds} s "
        f"for the demo (declared: {queue.visibility_timeout_factor} x {queue.function_timeout_seconds} = "
        f"{queue.visibility_timeout_seconds} s)",
        f"seeded {report.documents:,} documents: {report.market_documents:,} of real market history "
        f"({len(report.market_coins)} coins, daily, {MARKET_YEAR}; market data: CoinGecko) and "
        f"{report.documents - report.market_documents:,} synthetic ({report.coins} coins, {report.planted} planted "
        f"anomalies, {report.missing_values:,} missing signal values)",
        f"enqueued {report.sent} messages: {report.sent_market_latest} latest-mode for the real coins at "
        f"{moments} moments of {MARKET_YEAR} ({replayed}), {report.sent_latest} latest-mode and "
        f"{report.sent_backfill} backfill (7 days) for the synthetic coins, {report.sent_invalid} invalid"
        + (f"; {report.rejected_by_sqs} refused by SQS" if report.rejected_by_sqs else ""),
        "",
        f"messages: sent {report.sent} = processed {report.processed} + dead-lettered {len(report.dead_lettered)}"
        + ("" if report.accounted else f"   <-- DOES NOT ADD UP ({report.left_on_queue} still on the queue)"),
        f"  {report.poll.received} deliveries in {report.poll.batches} batches; {report.poll.failed} failed and were "
        f"redelivered or dead-lettered",
    ]
    for message_id, body, reason in report.dead_lettered:
        lines.append(f"  dead-lettered {message_id[:8]}: {body[:60]!r}" + (f" ({reason})" if reason else ""))
    periods = sorted({period for _, period in report.anomalies}, key=lambda p: int(p.rstrip("d")))
    signals = [signal for signal in SIGNALS if any((signal, p) in report.anomalies for p in periods)]
    rows = [[signal] + [report.anomalies[(signal, p)] for p in periods] for signal in signals]
    rows.append(["total"] + [sum(report.anomalies[(s, p)] for s in signals) for p in periods])
    lines += [
        "",
        "anomalies flagged (is_anomaly true), by signal and window, real and synthetic coins:",
        _table(rows, ["signal"] + periods),
        "",
    ]
    recall = report.planted_found / report.planted if report.planted else 0.0
    share = report.unplanted_flags / report.judged_values if report.judged_values else 0.0
    lines += [
        f"planted anomalies found: {report.planted_found} of {report.planted} ({recall:.0%}; found = flagged in any window)",
        f"flags on unplanted points of the synthetic coins: {report.unplanted_flags} of {report.judged_values:,} "
        f"judged values ({share:.1%})",
    ]
    if report.plot is not None:
        lines.append(
            f"plot: {report.plot.path} ({report.plot.coin_id}, {report.plot.signal}, "
            f"{report.plot.period_days}-day window: {report.plot_reason})"
        )
    if report.report_page is not None:
        lines += [
            f"report: {report.report_page} (period {report.report_period})",
            f"  {report.report_summary}",
        ]
        if report.report_top:
            lines.append("  its top episodes:")
            lines += [f"    {_episode_line(episode)}" for episode in report.report_top]
    if report.function_log is not None:
        lines.append(f"function log (JSON lines): {report.function_log}")
    lines += _alert_lines(report)
    lines.append(f"finished in {report.seconds:.1f} s")
    return "\n".join(lines)
