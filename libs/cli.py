"""Local commands: ``python -m libs.cli COMMAND …`` (contract §8).

Each command reads the configuration of contract §7 (``MONGODB_URI=mongomock://``
for the embedded store). ``main(argv)`` returns the exit status, so the same
commands can be driven from Python. The work lives in ``libs/tools/local/``; this
module only parses arguments and prints.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from libs.errors import AnomalyServiceError
from libs.tools.local.lambda_context import LocalContext


def _invoke(args: argparse.Namespace) -> int:
    from libs.tools.local.function import load_handler

    try:
        event = json.loads(Path(args.event).read_bytes())
    except OSError as exc:
        raise AnomalyServiceError(f"cannot read {args.event}: {exc.strerror or exc}") from None
    except ValueError as exc:  # not UTF-8, or not JSON
        raise AnomalyServiceError(f"{args.event} is not JSON: {exc}") from None
    with _function_output_to_stderr():
        response = load_handler()(event, LocalContext(timeout_ms=args.timeout_ms))
    print(json.dumps(response, indent=2))
    return 0


@contextmanager
def _function_output_to_stderr() -> Iterator[None]:
    """The function's log and EMF metric lines go to stderr, so stdout holds only the response."""
    import contextlib

    from libs.observability import logs_to

    with logs_to(sys.stderr), contextlib.redirect_stdout(sys.stderr):
        yield


def _ensure_indexes(args: argparse.Namespace) -> int:
    from libs.helpers.mongodb_helper import ensure_indexes

    name = ensure_indexes()
    print(f"index {name} is in place")
    return 0


@contextmanager
def _function_log_level(verbose: bool) -> Iterator[None]:
    """The function logs every message at INFO: keep only warnings and errors unless ``--verbose``."""
    from libs.observability import logger

    previous = logger.log_level
    if not verbose:
        logger.setLevel("WARNING")
    try:
        yield
    finally:
        logger.setLevel(previous)


def _demo(args: argparse.Namespace) -> int:
    from libs.helpers.constants_helper import get_settings
    from libs.helpers.mongodb_helper import get_collection
    from libs.tools.local.demo import DemoOptions, ProgressLine, format_report, run_demo

    settings = get_settings()
    if not settings.embedded:
        raise AnomalyServiceError("demo runs on the embedded store only: set MONGODB_URI=mongomock://")
    _writable_directory(Path(args.out_dir), "--out-dir")
    options = DemoOptions(
        coins=args.coins,
        days=args.days,
        per_day=args.per_day,
        seed=args.seed,
        coins_per_message=args.coins_per_message,
        visibility_timeout_seconds=args.visibility_timeout,
        out_dir=Path(args.out_dir),
        verbose=args.verbose,
        market_coins=tuple(_comma_list(args.market_coins) or ()) if args.market_coins is not None else None,
    )
    report = run_demo(options, get_collection(settings), settings, progress=ProgressLine())
    print(format_report(report))
    return 0 if report.accounted else 1


def _writable_directory(directory: Path, option: str) -> None:
    """Create ``directory`` if needed and check that a file can be written there (a clear error if not)."""
    import tempfile

    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise AnomalyServiceError(f"{option} {directory}: cannot write there: {exc.strerror or exc}") from None


def _coin_argument(coin: str) -> str:
    """A coin id typed on the command line, as contract §3 allows one (argparse type of ``--coin``)."""
    from libs.request import coin_id_problem

    if (problem := coin_id_problem(coin)) is not None:
        raise argparse.ArgumentTypeError(problem)
    return coin


def _comma_list(text: str | None) -> list[str] | None:
    """The non-empty, stripped items of a comma-separated option (None when the option is absent)."""
    return [part.strip() for part in text.split(",") if part.strip()] if text else None


def _request_template(args: argparse.Namespace) -> dict[str, Any]:
    from libs.errors import ConfigError
    from libs.helpers.constants_helper import day_list

    template: dict[str, Any] = {}
    if args.signals:
        template["signals"] = _comma_list(args.signals)
    if args.periods:
        try:  # read as ANOMALY_PERIODS is: the one parser of comma-separated days
            template["periods"] = list(day_list("--periods", args.periods))
        except ConfigError as exc:
            raise AnomalyServiceError(f"--periods {exc.reason}") from None
    for key in ("as_of", "since", "request_id"):
        if getattr(args, key) is not None:
            template[key] = getattr(args, key)
    if args.deviation_limit is not None:
        template["deviation_limit"] = args.deviation_limit
    return template


#: How ``--coins-file`` is read, for ``--help`` and the docs.
COINS_FILE_FORMAT = (
    "UTF-8 text, one coin id a line; '#' starts a comment anywhere on a line, spaces around an id, "
    "blank lines and a byte-order mark are ignored"
)


def read_coins_file(path: str) -> list[str]:
    """The coin ids of a ``--coins-file`` (see :data:`COINS_FILE_FORMAT`), in file order.

    Raises :class:`AnomalyServiceError` naming the file when it cannot be read or is not UTF-8 text.
    """
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise AnomalyServiceError(f"cannot read --coins-file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise AnomalyServiceError(f"cannot read --coins-file {path}: line {line} is not UTF-8 text") from None
    ids = (line.partition("#")[0].strip() for line in text.splitlines())
    return [coin for coin in ids if coin]


def _coin_universe(args: argparse.Namespace) -> tuple[list[str], str]:
    if args.coins:
        return _comma_list(args.coins) or [], "--coins"
    if args.coins_file:
        return read_coins_file(args.coins_file), args.coins_file
    from libs.helpers.mongodb_helper import distinct_coin_ids

    return distinct_coin_ids(), "the store"


def _enqueue(args: argparse.Namespace) -> int:
    from libs.helpers.constants_helper import get_settings
    from libs.processor import utc_now
    from libs.request import parse_request
    from libs.tools.local.producer import request_bodies, send_bodies
    from libs.tools.local.sqs_endpoint import sqs_client

    coins, source = _coin_universe(args)
    if not coins:
        print(f"error: no coins found in {source}", file=sys.stderr)
        return 2
    bodies = request_bodies(coins, args.coins_per_message, _request_template(args))
    settings, now = get_settings(), utc_now()
    for position, body in enumerate(bodies):  # the function would dead-letter an invalid body: refuse it here
        parse_request(body, message_id=f"enqueue-{position}", settings=settings, now=now)
    client = sqs_client(args.endpoint_url, queue_url=args.queue_url)
    report = send_bodies(client, args.queue_url, bodies)
    print(
        f"sent {report.sent} of {len(bodies)} messages ({len(coins)} coins from {source}, "
        f"at most {args.coins_per_message} per message; {report.retried} entries retried)"
    )
    for body, reason in report.rejected:
        print(f"refused by SQS: {reason}: {body[:80]}", file=sys.stderr)
    return 0 if not report.rejected else 1


def _declared_queue(args: argparse.Namespace, **options: int | None) -> Any:
    """deploy/queue.yml's settings for ``--stage``, with the options given standing in for a deploy's params."""
    from dataclasses import replace

    from libs.tools.local.queue_settings import load_queue_settings

    given: dict[str, Any] = {name: value for name, value in options.items() if value is not None}
    return replace(load_queue_settings(stage=getattr(args, "stage", None)), **given)


def _poll(args: argparse.Namespace) -> int:
    from libs.tools.local.poller import Poller
    from libs.tools.local.sqs_endpoint import sqs_client

    queue = _declared_queue(
        args,
        function_timeout_seconds=args.function_timeout,
        batch_size=args.batch_size,
        maximum_batching_window_seconds=args.batching_window,
    )
    client = sqs_client(args.endpoint_url, queue_url=args.queue_url)
    # the function's log and EMF metric lines go to stderr: stdout holds the poller's own report
    with _function_output_to_stderr(), _function_log_level(args.verbose):
        poller = Poller(
            client,
            args.queue_url,
            batch_size=queue.batch_size,
            batching_window_seconds=queue.maximum_batching_window_seconds,
            wait_seconds=args.wait_seconds,
            function_timeout_ms=queue.function_timeout_ms,
        )
        try:
            stats = poller.run(until_empty=args.until_empty, max_seconds=args.max_seconds)
        except KeyboardInterrupt:
            stats = poller.stats
            stats.stopped = "interrupted"
        except Exception:
            if poller.stats.batches:  # the queue failed midway: say what was done before the error line
                stats = poller.stats
                print(
                    f"{stats.batches} batches, {stats.received} deliveries before the queue failed: "
                    f"{stats.succeeded} processed and deleted, {stats.failed} failed"
                )
            raise
    print(
        f"{stats.batches} batches, {stats.received} deliveries: {stats.succeeded} processed and deleted, "
        f"{stats.failed} failed (left to the queue's redrive policy), {stats.delete_errors} delete errors"
        f" ({stats.stopped})"
    )
    for error in stats.invocation_errors[-5:]:
        print(f"function error (whole batch left on the queue): {error}", file=sys.stderr)
    return 0


def _plot(args: argparse.Namespace) -> int:
    from libs.helpers.constants_helper import get_settings
    from libs.helpers.mongodb_helper import get_collection
    from libs.tools.plot import plot_signal

    settings = get_settings()
    try:
        summary = plot_signal(
            get_collection(settings),
            coin_id=args.coin,
            signal=args.signal,
            period_days=args.period,
            out=Path(args.out),
            deviation_limit=settings.deviation_limit,
            min_observations=settings.min_observations,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        raise AnomalyServiceError(f"--out {args.out}: cannot write the plot there: {exc.strerror or exc}") from None
    print(f"wrote {summary.path}: {summary.points} observations of {summary.signal}, {summary.flagged} flagged")
    return 0


def _report(args: argparse.Namespace) -> int:
    from libs.helpers.constants_helper import get_settings
    from libs.helpers.mongodb_helper import get_collection, get_reader
    from libs.processor import utc_now
    from libs.tools.report.build import write_report
    from libs.tools.report.scope import ReportArgumentError, report_scope

    if not args.out:  # '' would be the current directory: refuse rather than write (and replace) there
        raise ReportArgumentError("--out is empty: name the report's directory, e.g. --out out/report")
    now = utc_now()
    scope = report_scope(
        now=now,
        since=args.since,
        as_of=args.as_of,
        coin_ids=_coin_universe(args)[0] if args.coins or args.coins_file else None,
        signals=_comma_list(args.signals),
        periods=args.periods,
    )
    settings = get_settings()
    result = write_report(
        scope,
        settings,
        Path(args.out),
        reader=get_reader(settings),
        collection=get_collection(settings),
        generated_at=now,
    )
    print(f"report: {result.page}")
    print(result.summary_line(scope))
    return 0


def _backtest(args: argparse.Namespace) -> int:
    from libs.processor import utc_now
    from libs.tools.backtest.run import backtest_settings, check_out, run_backtest
    from libs.tools.backtest.scope import backtest_scope

    out = check_out(args.out)
    settings = backtest_settings(reads_store=args.input is None)
    now = utc_now()
    scope = backtest_scope(
        now=now,
        default_periods=settings.periods_days,
        since=args.since,
        as_of=args.as_of,
        coin_ids=_coin_universe(args)[0] if args.coins or args.coins_file else None,
        signals=_comma_list(args.signals),
        periods=args.periods,
    )
    reader = None
    if args.input is None:
        from libs.helpers.mongodb_helper import get_reader

        reader = get_reader(settings)
    output = run_backtest(
        scope,
        settings,
        out,
        generated_at=now,
        input_path=Path(args.input) if args.input is not None else None,
        events_path=Path(args.events) if args.events is not None else None,
        reader=reader,
    )
    print(output.result.summary_line())
    for line in output.result.event_lines():
        print(line)
    print(f"backtest: {output.page}")
    return 0


def _local_queue(args: argparse.Namespace) -> int:
    import time

    from libs.tools.local.sqs_endpoint import LocalSqsEndpoint, create_queues, sqs_client

    settings = _declared_queue(args, max_receive_count=args.max_receive_count)
    with LocalSqsEndpoint(port=args.port) as endpoint:
        queues = create_queues(sqs_client(endpoint.url), settings, visibility_timeout_seconds=args.visibility_timeout)
        print(f"endpoint:  {endpoint.url}\nqueue:     {queues.url}\ndlq:       {queues.dlq_url}", flush=True)
        try:
            time.sleep(args.serve_seconds if args.serve_seconds is not None else float("inf"))
        except KeyboardInterrupt:
            pass
    return 0


def _redrive(args: argparse.Namespace) -> int:
    from libs.tools.local.redrive import redrive
    from libs.tools.local.sqs_endpoint import sqs_client

    client = sqs_client(args.endpoint_url, queue_url=args.queue_url)
    report = redrive(client, args.queue_url, dry_run=args.dry_run)
    if report.dry_run:
        print(f"{report.dlq_url} reports {report.reported} messages waiting")
        for letter in report.listed:
            print(f"{letter.message_id}  receives={letter.receive_count}  {letter.preview}")
        print(f"listed {len(report.listed)} of the {report.reported} reported; nothing moved (--dry-run)")
        if len(report.listed) < report.reported:
            print(f"the listing ended because {report.stopped}")
        if report.fifo:
            print(
                "a FIFO queue: while a message group's first message is held, its later ones stay hidden, "
                "so only the first of each group can be listed without moving it"
            )
        if report.not_restored:
            print(
                f"{report.not_restored} listed messages could not be made visible again at once: they come back "
                "when their lease ends",
                file=sys.stderr,
            )
        return 0
    print(f"moved {report.moved} messages from {report.dlq_url} to {report.queue_url}")
    if report.returned:
        print(f"{report.returned} of the copies failed again and are back in the DLQ (left there)")
    for message_id, reason in report.not_sent:
        print(f"not moved, still in the DLQ: {message_id}: {reason}", file=sys.stderr)
    for message_id, reason in report.not_deleted:
        print(
            f"moved but not deleted from the DLQ (a later redrive moves it again): {message_id}: {reason}",
            file=sys.stderr,
        )
    if report.left:
        print(
            f"the DLQ still counts {report.left} more messages it did not hand over (received by another reader, "
            "delayed, or its approximate count not yet settled): run redrive again to move any that wait",
            file=sys.stderr,
        )
    return 0 if report.complete else 1


class _Parser(argparse.ArgumentParser):
    """argparse with contract §8's answer to a bad argument: one ``error: …`` line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _seconds(text: str) -> float:
    value = _finite(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds, got {text!r}")
    return value


#: SQS's longest visibility timeout (12 hours).
MAX_VISIBILITY_TIMEOUT_S = 43_200


def _visibility_timeout(text: str) -> int:
    value = _positive(text)
    if value > MAX_VISIBILITY_TIMEOUT_S:
        raise argparse.ArgumentTypeError(
            f"must be at most {MAX_VISIBILITY_TIMEOUT_S} seconds (SQS's limit), got {value}"
        )
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65_535:
        raise argparse.ArgumentTypeError(f"must be a TCP port from 0 to 65535, got {value}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    from libs.helpers.constants_helper import SIGNALS

    parser = _Parser(prog="python -m libs.cli", description=__doc__.splitlines()[0])
    parser.set_defaults(reads_settings=True)
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser(
        "demo", help="the whole pipeline on the embedded store and a local SQS, no cloud account"
    )
    demo.add_argument(
        "--market-coins",
        help="comma-separated real coins to seed from data/coingecko-daily.csv.gz (default: all 50)",
    )
    demo.add_argument("--coins", type=_positive, default=50, help="synthetic coins to seed (default 50)")
    demo.add_argument("--days", type=_positive, default=35, help="days of synthetic history per coin (default 35)")
    demo.add_argument(
        "--per-day", type=_positive, default=4, help="synthetic observations per coin per day (default 4)"
    )
    demo.add_argument("--seed", type=int, default=7, help="random seed of the synthetic data")
    demo.add_argument(
        "--coins-per-message", type=_positive, default=10, help="synthetic coins per request message (default 10)"
    )
    demo.add_argument(
        "--visibility-timeout",
        type=_visibility_timeout,
        default=1,
        help="the queue's visibility timeout in seconds, shortened so redrive takes seconds (default 1)",
    )
    demo.add_argument("--out-dir", default="out", help="where the plot and the function log go (default out/)")
    demo.add_argument(
        "--verbose", action="store_true", help="show the function's JSON log lines instead of filing them"
    )
    demo.set_defaults(run=_demo)

    invoke = commands.add_parser("invoke", help="one handler call on a saved event; prints the response")
    invoke.add_argument("event", help="path of an SQS event JSON file, e.g. events/latest.json")
    invoke.add_argument("--timeout-ms", type=int, default=120_000, help="the function timeout to count down from")
    invoke.set_defaults(run=_invoke)

    queue = _Parser(add_help=False)
    queue.add_argument("--queue-url", required=True, help="the request queue's URL")
    queue.add_argument("--endpoint-url", help="the SQS endpoint, e.g. http://127.0.0.1:PORT for a local one")

    local_queue = commands.add_parser(
        "local-queue", help="serve a local SQS with the queue and DLQ of deploy/queue.yml until Ctrl-C"
    )
    local_queue.add_argument("--stage", help="the stage that names the queues (default: deploy/queue.yml's, dev)")
    local_queue.add_argument("--port", type=_port, default=0, help="port on 127.0.0.1 (default: a free one)")
    local_queue.add_argument(
        "--visibility-timeout",
        type=_visibility_timeout,
        help="seconds; default factor x function timeout as declared (720)",
    )
    local_queue.add_argument(
        "--max-receive-count", type=_positive, help="receives before the DLQ (default: deploy/queue.yml's, 5)"
    )
    local_queue.add_argument("--serve-seconds", type=_seconds, help="stop after this long (default: until Ctrl-C)")
    local_queue.set_defaults(run=_local_queue, reads_settings=False)

    enqueue = commands.add_parser("enqueue", parents=[queue], help="the producer: coins split into request messages")
    coins = enqueue.add_mutually_exclusive_group()
    coins.add_argument("--coins", help="comma-separated coin ids (default: every coin in the store)")
    coins.add_argument("--coins-file", help=f"a file of coin ids: {COINS_FILE_FORMAT}")
    enqueue.add_argument(
        "--coins-per-message", type=_positive, default=100, help="at most this many coins a message (default 100)"
    )
    enqueue.add_argument("--signals", help=f"comma-separated, of {', '.join(SIGNALS)}")
    enqueue.add_argument("--periods", help="comma-separated window lengths in days, e.g. 3,7,30")
    enqueue.add_argument("--as-of", dest="as_of", help="ISO-8601 date or datetime")
    enqueue.add_argument("--since", help="ISO-8601 date or datetime: range mode (a backfill)")
    enqueue.add_argument("--deviation-limit", type=_finite, help="k of the Tukey fences")
    enqueue.add_argument("--request-id", dest="request_id", help="carried into the function's logs")
    enqueue.set_defaults(run=_enqueue)

    poll = commands.add_parser("poll", parents=[queue], help="a local event source mapping feeding the handler")
    poll.add_argument("--batch-size", type=_positive, help="messages per invocation (default: deploy/queue.yml's, 10)")
    poll.add_argument(
        "--batching-window",
        type=int,
        choices=range(301),
        metavar="0-300",
        help="seconds to gather a batch above 10 messages (default: deploy/queue.yml's, 0)",
    )
    poll.add_argument(
        "--function-timeout",
        type=_positive,
        help="seconds each invocation's context counts down from (default: deploy/queue.yml's, 120)",
    )
    poll.add_argument("--until-empty", action="store_true", help="stop when no message is waiting or in flight")
    poll.add_argument(
        "--wait-seconds",
        type=int,
        default=1,
        choices=range(21),
        metavar="0-20",
        help="long-poll wait per receive (default 1)",
    )
    poll.add_argument("--max-seconds", type=_seconds, help="stop after this long")
    poll.add_argument("--verbose", action="store_true", help="show the function's INFO log lines")
    poll.set_defaults(run=_poll)

    plot = commands.add_parser("plot", help="a coin's signal over time with its IQR fences and flagged points")
    plot.add_argument("--coin", required=True, type=_coin_argument, help="coin id")
    plot.add_argument("--signal", required=True, choices=SIGNALS)
    plot.add_argument("--period", type=_positive, default=7, help="window length in days (default 7)")
    plot.add_argument("--out", required=True, help="PNG file to write")
    plot.set_defaults(run=_plot)

    report = commands.add_parser("report", help="the analysts' page: ranked anomaly episodes of a period")
    report_coins = report.add_mutually_exclusive_group()
    report_coins.add_argument("--coins", help="comma-separated coin ids (default: every coin)")
    report_coins.add_argument("--coins-file", help=f"a file of coin ids: {COINS_FILE_FORMAT}")
    report.add_argument("--since", help="ISO-8601 date or datetime (default: --as-of minus 7 days)")
    report.add_argument("--as-of", dest="as_of", help="ISO-8601 date (its end) or datetime (default: now)")
    report.add_argument("--signals", help=f"comma-separated, of {', '.join(SIGNALS)} (default: all)")
    report.add_argument("--periods", help="comma-separated window lengths in days (default: every one stored)")
    report.add_argument("--out", required=True, help="directory for index.html, episodes.json and plots/")
    report.set_defaults(run=_report)

    backtest = commands.add_parser(
        "backtest", help="the alerts latest-mode messages would have published over a period (no writes)"
    )
    backtest.add_argument("--input", help="a score CSV file (.gz for gzip) instead of the store")
    backtest_coins = backtest.add_mutually_exclusive_group()
    backtest_coins.add_argument("--coins", help="comma-separated coin ids (default: every coin)")
    backtest_coins.add_argument("--coins-file", help="a file with one coin id a line ('#' starts a comment)")
    backtest.add_argument("--since", help="ISO-8601 date or datetime (default: --as-of minus 30 days)")
    backtest.add_argument("--as-of", dest="as_of", help="ISO-8601 date (its end) or datetime (default: now)")
    backtest.add_argument("--signals", help=f"comma-separated, of {', '.join(SIGNALS)} (default: all)")
    backtest.add_argument("--periods", help="comma-separated window lengths in days (default: ANOMALY_PERIODS)")
    backtest.add_argument("--events", help="a CSV of known events (name,coin_ids,onset,hours), e.g. data/events.csv")
    backtest.add_argument("--out", required=True, help="directory for alerts.json, summary.json and index.html")
    backtest.set_defaults(run=_backtest, reads_settings=False)  # a file needs no store: it reads its own way

    redrive = commands.add_parser(
        "redrive", parents=[queue], help="move the DLQ's messages (from the queue's RedrivePolicy) back, each once"
    )
    redrive.add_argument("--dry-run", action="store_true", help="list them (id, receives, body) and move nothing")
    redrive.set_defaults(run=_redrive, reads_settings=False)

    indexes = commands.add_parser("ensure-indexes", help="create the {coin_id: 1, timestamp: 1} index")
    indexes.set_defaults(run=_ensure_indexes)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit status (2 for a configuration, request, store or queue error)."""
    args = _parser().parse_args(argv)
    try:
        if args.reads_settings:  # a bad setting stops the command before it loads pandas and the driver
            from libs.helpers.constants_helper import get_settings

            get_settings()
        return args.run(args)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of our output went away (`| head`): nothing more to say
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except AnomalyServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        if not type(exc).__module__.startswith("botocore"):
            raise
        # any command's SQS (or SNS) call: an unreachable endpoint, a missing queue, no credentials
        from libs.tools.local.sqs_endpoint import describe_aws_error

        message = describe_aws_error(
            exc, endpoint_url=getattr(args, "endpoint_url", None), queue_url=getattr(args, "queue_url", None)
        )
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
