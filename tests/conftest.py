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
from libs.helpers.embedded_store import reset_embedded_store  # noqa: E402
from libs.helpers.mongodb_helper import get_collection  # noqa: E402
from tests.fakes.lambda_context import FakeLambdaContext  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


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
def lambda_context() -> FakeLambdaContext:
    return FakeLambdaContext()


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

    from libs.observability import logger

    stream = io.StringIO()
    handler = logger.registered_handler
    previous = handler.setStream(stream)
    try:
        yield JsonLogCapture(stream)
    finally:
        handler.setStream(previous)
