"""Local commands: ``python -m libs.cli COMMAND …`` (SPEC section 8).

Each command reads the configuration of SPEC section 7 (``MONGODB_URI=mongomock://``
for the embedded store). ``main(argv)`` returns the exit status, so the same
commands can be driven from Python.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Sequence

from libs.errors import AnomalyServiceError

Command = Callable[[argparse.Namespace], int]


class LocalContext:
    """A Lambda context for local runs: remaining time counts down from ``timeout_ms``."""

    def __init__(self, timeout_ms: int = 120_000, function_name: str = "crypto-risk-anomaly-local") -> None:
        import time
        import uuid

        self._clock = time.monotonic
        self._deadline = self._clock() + timeout_ms / 1000
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = 1024
        self.invoked_function_arn = f"arn:aws:lambda:local:000000000000:function:{function_name}"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - self._clock()) * 1000))


def _invoke(args: argparse.Namespace) -> int:
    import handler

    event = json.loads(Path(args.event).read_text())
    response = handler.handler(event, LocalContext(timeout_ms=args.timeout_ms))
    print(json.dumps(response, indent=2))
    return 0


def _ensure_indexes(args: argparse.Namespace) -> int:
    from libs.helpers.mongodb_helper import ensure_indexes

    name = ensure_indexes()
    print(f"index {name} is in place")
    return 0


def _table(rows: list[list[Any]], header: list[str]) -> str:
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _demo(args: argparse.Namespace) -> int:
    import handler
    from libs.helpers.constants_helper import get_settings
    from libs.helpers.mongodb_helper import ensure_indexes, get_collection
    from libs.synthetic import synthetic_documents

    from libs.observability import logger

    if not args.verbose:
        logger.setLevel("WARNING")
    settings = get_settings()
    if not settings.embedded:
        print("demo runs on the embedded store only: set MONGODB_URI=mongomock://", file=sys.stderr)
        return 2
    collection = get_collection()
    documents, planted = synthetic_documents(coins=args.coins, days=35, per_day=args.per_day, seed=args.seed)
    collection.insert_many(documents)
    ensure_indexes(collection)
    as_of = max(doc["timestamp"] for doc in documents)
    print(f"seeded {len(documents):,} documents for {args.coins} coins, "
          f"{len(planted)} planted anomalies (one at each coin's newest observation)")
    bodies = [
        {"as_of": as_of.isoformat(), "request_id": "demo-latest"},
        {"since": (as_of - timedelta(days=6)).isoformat(), "as_of": as_of.isoformat(), "request_id": "demo-backfill"},
        {"periods": [3.0], "request_id": "demo-invalid"},
    ]
    event = {"Records": [_record(body, f"demo-{i}") for i, body in enumerate(bodies)]}
    with contextlib.nullcontext() if args.verbose else contextlib.redirect_stdout(io.StringIO()):
        response = handler.handler(event, LocalContext())  # quiet: its EMF metric lines are for CloudWatch
    failed = [item["itemIdentifier"] for item in response["batchItemFailures"]]
    print(f"sent {len(bodies)} messages; failed (to be retried, then dead-lettered): {failed or 'none'}")

    counts: Counter[tuple[str, str]] = Counter()
    for doc in collection.find({"anomalies": {"$exists": True}}):
        for signal, periods in doc["anomalies"].items():
            if isinstance(periods, dict):
                for period, entry in periods.items():
                    counts[(signal, period)] += bool(entry.get("is_anomaly"))
    flagged = {(d["coin_id"], d["timestamp"], s) for d in collection.find({"anomalies": {"$exists": True}})
               for s, periods in d["anomalies"].items() if isinstance(periods, dict)
               and any(e.get("is_anomaly") for e in periods.values())}
    found = sum((p.coin_id, p.timestamp, p.signal) in flagged for p in planted)
    periods = sorted({p for _, p in counts}, key=lambda p: int(p[:-1]))
    signals = sorted({s for s, _ in counts})
    rows = [[signal] + [counts[(signal, p)] for p in periods] for signal in signals]
    print("\nanomalies flagged, by signal and window:")
    print(_table(rows, ["signal"] + periods))
    print(f"\nplanted anomalies found: {found} of {len(planted)} "
          f"(last 7 days judged; a plant counts as found when any window flags it)")
    return 0


def _record(body: Any, message_id: str) -> dict[str, Any]:
    return {
        "messageId": message_id,
        "receiptHandle": f"local-{message_id}",
        "body": json.dumps(body),
        "attributes": {"ApproximateReceiveCount": "1"},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:local:000000000000:crypto-risk-anomaly-requests",
        "awsRegion": "local",
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m libs.cli", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="the main job on the embedded store, no cloud account")
    demo.add_argument("--coins", type=int, default=12, help="synthetic coins to seed (default 12)")
    demo.add_argument("--per-day", type=int, default=6, help="observations per coin per day (default 6)")
    demo.add_argument("--seed", type=int, default=7, help="random seed of the synthetic data")
    demo.add_argument("--verbose", action="store_true", help="show the function's JSON log lines and EMF metrics")
    demo.set_defaults(run=_demo)

    invoke = commands.add_parser("invoke", help="one handler call on a saved event; prints the response")
    invoke.add_argument("event", help="path of an SQS event JSON file, e.g. events/latest.json")
    invoke.add_argument("--timeout-ms", type=int, default=120_000, help="the function timeout to count down from")
    invoke.set_defaults(run=_invoke)

    indexes = commands.add_parser("ensure-indexes", help="create the {coin_id: 1, timestamp: 1} index")
    indexes.set_defaults(run=_ensure_indexes)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit status (2 for a configuration or store error)."""
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except AnomalyServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
