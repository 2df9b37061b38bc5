"""A real SQS API on loopback (moto's server) and the queue pair ``serverless.yml`` declares.

boto3 talks to it over HTTP with ``endpoint_url``, exactly as to AWS, and
moto 5.2.5 honours the ``RedrivePolicy``: a message received
``maxReceiveCount`` times and still not deleted moves to the DLQ on the next
receive. A client for a loopback endpoint is given fake credentials
explicitly, so a local run never signs anything with real ones; a client for
AWS itself uses the ordinary credential chain.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import boto3
from botocore.config import Config

from libs.tools.local.queue_settings import QueueSettings

LOOPBACK = "127.0.0.1"
DEFAULT_REGION = "us-east-1"
#: moto accepts any credentials; these are never real.
FAKE_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "aws_session_token": "testing"}
_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


class LocalSqsEndpoint:
    """moto's SQS server on 127.0.0.1 and a free port (or ``port``); use as a context manager.

    By default the port is chosen by the OS (bind to port 0), so parallel runs
    do not collide. moto keeps its state per process: two endpoints in one process
    share their queues.
    """

    def __init__(self, port: int = 0) -> None:
        self._port = port
        self._server: Any = None
        self.url = ""

    def start(self) -> LocalSqsEndpoint:
        from moto.server import ThreadedMotoServer

        silence_access_log()
        self._server = ThreadedMotoServer(ip_address=LOOPBACK, port=self._port, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.url = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> LocalSqsEndpoint:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def silence_access_log() -> None:
    """werkzeug logs every request at INFO: one line per receive would drown the output."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)


def is_loopback(endpoint_url: str) -> bool:
    return urlparse(endpoint_url).hostname in _LOOPBACK_HOSTS


def region_of(queue_url: str | None) -> str | None:
    """The region in an AWS queue URL (``https://sqs.<region>.amazonaws.com/…``), else None."""
    host = urlparse(queue_url or "").hostname or ""
    parts = host.split(".")
    if len(parts) >= 4 and parts[0] == "sqs" and parts[-2] == "amazonaws":
        return parts[1]
    return None


def sqs_client(endpoint_url: str | None = None, *, queue_url: str | None = None, region: str | None = None) -> Any:
    """An SQS client: fake credentials for a loopback endpoint, the usual chain otherwise."""
    kwargs: dict[str, Any] = {}
    if endpoint_url:
        kwargs["endpoint_url"] = endpoint_url
        if is_loopback(endpoint_url):
            kwargs.update(FAKE_CREDENTIALS)
    region = region or region_of(queue_url) or boto3.session.Session().region_name or DEFAULT_REGION
    config = Config(retries={"max_attempts": 3, "mode": "standard"}, read_timeout=70)
    return boto3.client("sqs", region_name=region, config=config, **kwargs)


@dataclass(frozen=True)
class Queues:
    """The request queue and its dead-letter queue."""

    url: str
    arn: str
    dlq_url: str
    dlq_arn: str


def queue_arn(client: Any, queue_url: str) -> str:
    return client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def create_queues(client: Any, settings: QueueSettings, *, visibility_timeout_seconds: int | None = None) -> Queues:
    """Create the DLQ and the request queue with the attributes CloudFormation gives them.

    ``visibility_timeout_seconds`` replaces factor × function timeout (720 s by
    default) for local runs that want a failed message redelivered within
    seconds; everything else is as declared.
    """
    visibility = (
        settings.visibility_timeout_seconds if visibility_timeout_seconds is None else visibility_timeout_seconds
    )
    dlq_url = client.create_queue(
        QueueName=settings.dead_letter_queue_name,
        Attributes={"MessageRetentionPeriod": str(settings.dlq_retention_seconds)},
    )["QueueUrl"]
    dlq_arn = queue_arn(client, dlq_url)
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": settings.max_receive_count}
    url = client.create_queue(
        QueueName=settings.request_queue_name,
        Attributes={"VisibilityTimeout": str(visibility), "RedrivePolicy": json.dumps(redrive)},
    )["QueueUrl"]
    return Queues(url=url, arn=queue_arn(client, url), dlq_url=dlq_url, dlq_arn=dlq_arn)


@dataclass(frozen=True)
class QueueCounts:
    """SQS's approximate counts: waiting, in flight (received, not deleted), delayed."""

    visible: int
    in_flight: int
    delayed: int

    @property
    def drained(self) -> bool:
        return self.visible == 0 and self.in_flight == 0 and self.delayed == 0


def queue_counts(client: Any, queue_url: str) -> QueueCounts:
    names = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]
    attributes = client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)["Attributes"]
    visible, in_flight, delayed = (int(attributes.get(name, 0)) for name in names)
    return QueueCounts(visible=visible, in_flight=in_flight, delayed=delayed)


def peek_messages(client: Any, queue_url: str, *, hide_seconds: int = 60) -> list[dict[str, Any]]:
    """Every message waiting in the queue (e.g. the DLQ), received once and hidden for ``hide_seconds``.

    Nothing is deleted: the messages come back when ``hide_seconds`` has passed.
    """
    messages: list[dict[str, Any]] = []
    while True:
        batch = client.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=hide_seconds,
            WaitTimeSeconds=0,
            AttributeNames=["All"],
        ).get("Messages", [])
        if not batch:
            return messages
        messages.extend(batch)
