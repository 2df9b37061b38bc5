"""Shared fixtures. The environment is set before anything imports ``handler``."""

from __future__ import annotations

import os

# The handler reads its configuration at import (cold start): point it at the embedded store.
os.environ["MONGODB_URI"] = "mongomock://"
for _name in ("LAMBDA_TASK_ROOT", "AWS_LAMBDA_FUNCTION_NAME", "_X_AMZN_TRACE_ID", "MONGODB_READ_BACKEND"):
    os.environ.pop(_name, None)
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

from datetime import datetime  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from libs.helpers import constants_helper  # noqa: E402
from libs.helpers.constants_helper import Settings, load_settings  # noqa: E402
from libs.helpers.mongodb_helper import get_collection  # noqa: E402
from libs.tools.embedded_store import reset_embedded_store  # noqa: E402
from libs.tools.local.lambda_context import LocalContext  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def settings() -> Settings:
    """Default settings on the embedded store."""
    return load_settings({"MONGODB_URI": "mongomock://"})


@pytest.fixture
def store():
    """A fresh, empty embedded scores collection (the one the handler uses)."""
    reset_embedded_store()
    constants_helper.reset_settings()
    collection = get_collection()
    yield collection
    reset_embedded_store()


@pytest.fixture
def real_candles():
    """Real hourly market candles, from the CSV file ``REAL_CANDLES_CSV`` names; the test skips without it.

    The file has the columns ``timestamp, Open, High, Low, Close, Volume`` (one
    row an hour, UTC), such as the 1,000 SOL/USDT candles of backtesting.py's
    test data (2024-09-20 to 2024-11-01), which these tests were written on.
    That file is AGPL-licensed, so the repository does not carry it: point the
    variable at a copy (docs/testing.md, "Markers and skips").
    """
    import pandas as pd

    path = os.environ.get("REAL_CANDLES_CSV", "").strip()
    if not path:
        pytest.skip(
            "real hourly candles not given: set REAL_CANDLES_CSV to a CSV of timestamp,Open,High,Low,Close,Volume"
        )
    if not Path(path).is_file():
        pytest.fail(f"REAL_CANDLES_CSV names {path}, which is not a file")
    return pd.read_csv(path, parse_dates=["timestamp"])


@pytest.fixture
def lambda_context() -> LocalContext:
    return LocalContext()


@pytest.fixture
def now() -> datetime:
    return datetime(2024, 11, 1, 12, 0, 0)


class JsonLogCapture:
    """The JSON lines the service's logger wrote while the fixture was active."""

    def __init__(self, stream) -> None:
        self._stream = stream

    @property
    def text(self) -> str:
        return self._stream.getvalue()

    def lines(self) -> list[dict]:
        import json

        return [json.loads(line) for line in self.text.splitlines() if line.startswith("{")]

    def errors(self) -> list[dict]:
        return [line for line in self.lines() if line["level"] == "ERROR"]


@pytest.fixture
def json_logs():
    """Capture the Powertools logger's JSON output (it holds its own stream, which capsys cannot see)."""
    import io

    from libs.observability import logs_to

    stream = io.StringIO()
    with logs_to(stream):
        yield JsonLogCapture(stream)


@pytest.fixture(scope="session")
def sqs_endpoint():
    """moto's SQS server on loopback, one per test session (moto keeps its state per process)."""
    from libs.tools.local.sqs_endpoint import LocalSqsEndpoint

    with LocalSqsEndpoint() as endpoint:
        yield endpoint


@pytest.fixture
def sqs(sqs_endpoint):
    """A client of the loopback SQS server, whose queues and messages are wiped first."""
    import urllib.request

    from libs.tools.local.sqs_endpoint import sqs_client

    urllib.request.urlopen(urllib.request.Request(f"{sqs_endpoint.url}/moto-api/reset", method="POST"), timeout=10)
    return sqs_client(sqs_endpoint.url)


@pytest.fixture
def queue_settings():
    """The queue settings deploy/queue.yml declares (serverless.yml reads the same file), for the default stage."""
    from libs.tools.local.queue_settings import load_queue_settings

    return load_queue_settings()


@pytest.fixture
def queues(sqs, queue_settings):
    """The request queue and DLQ as declared, with a 1 s visibility timeout so redrive takes seconds."""
    from libs.tools.local.sqs_endpoint import create_queues

    return create_queues(sqs, queue_settings, visibility_timeout_seconds=1)
