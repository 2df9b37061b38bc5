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
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse, urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from libs.errors import AnomalyServiceError
from libs.tools.local.queue_settings import QueueSettings

LOOPBACK = "127.0.0.1"
DEFAULT_REGION = "us-east-1"
#: moto accepts any credentials; these are never real.
FAKE_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "aws_session_token": "testing"}
_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
#: Seconds to wait for a connection to the SQS endpoint (botocore's default, 60, per attempt).
CONNECT_TIMEOUT_S = 5
#: Seconds the local endpoint may take to start listening.
SERVER_START_TIMEOUT_S = 30
#: How much of an error's text goes into the one-line message.
ERROR_EXCERPT_CHARS = 300


class QueueUnavailable(AnomalyServiceError):
    """The SQS endpoint cannot be reached or refused a request (a missing queue, no permission)."""


def check_url(url: str, option: str) -> str:
    """``url`` when it is an http(s) URL with a host (and a valid port); else a clear error naming ``option``."""
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises on a port out of range
    except ValueError as exc:
        raise QueueUnavailable(f"{option} {url!r} is not a usable URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise QueueUnavailable(f"{option} {url!r} is not an http:// or https:// URL with a host")
    return url


def _without_userinfo(text: str) -> str:
    parts = urlsplit(text)
    if parts.username is None and parts.password is None:
        return text
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def describe_aws_error(exc: Exception, *, endpoint_url: str | None, queue_url: str | None) -> str | None:
    """One line saying what went wrong talking to SQS (or SNS), or None when ``exc`` is not botocore's.

    The command's answer to an unreachable endpoint, a missing queue or absent credentials
    (contract §8: ``error: …`` and exit 2, never a traceback). It names the endpoint (or, on AWS
    itself, the queue) and never a credential: botocore's messages hold none, and user
    information in a URL is dropped.
    """
    where = _without_userinfo(endpoint_url) if endpoint_url else "AWS"
    queue = f" for {_without_userinfo(queue_url)}" if queue_url else ""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        detail = " ".join(f"{error.get('Code', '')}: {error.get('Message', '')}".split())
        return f"{exc.operation_name}{queue} refused by {where}: {detail[:ERROR_EXCERPT_CHARS]}"
    if isinstance(exc, (EndpointConnectionError, ConnectionClosedError, ConnectTimeoutError, ReadTimeoutError)):
        return f"cannot reach the SQS endpoint {where}{queue}: {_without_userinfo(str(exc))[:ERROR_EXCERPT_CHARS]}"
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return (
            f"no usable AWS credentials to call {where}{queue}: {exc} (configure them as for the AWS CLI, "
            "or give --endpoint-url of a local endpoint)"
        )
    if isinstance(exc, BotoCoreError):
        text = " ".join(_without_userinfo(str(exc)).split())
        return f"the request to {where}{queue} failed: {type(exc).__name__}: {text[:ERROR_EXCERPT_CHARS]}"
    return None


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
        """Serve; :class:`QueueUnavailable` when the port cannot be listened on (moto would wait forever)."""
        import threading

        from moto.server import ThreadedMotoServer

        silence_access_log()
        if self._port:
            with socket.socket() as probe:
                try:
                    probe.bind((LOOPBACK, self._port))
                except OSError as exc:
                    raise QueueUnavailable(f"cannot serve on port {self._port} of {LOOPBACK}: {exc.strerror}") from None
        self._server = ThreadedMotoServer(ip_address=LOOPBACK, port=self._port, verbose=False)
        # moto's start() waits for its server thread without a bound: if that thread fails to listen
        # (the port taken since the check above), the wait would never end
        starting = threading.Thread(target=self._server.start, name="moto-start", daemon=True)
        starting.start()
        starting.join(timeout=SERVER_START_TIMEOUT_S)
        if starting.is_alive():
            self._server = None
            raise QueueUnavailable(f"the local SQS endpoint did not start on port {self._port} of {LOOPBACK}")
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
    """An SQS client: fake credentials for a loopback endpoint, the usual chain otherwise.

    ``endpoint_url`` and ``queue_url`` must be http(s) URLs (:class:`QueueUnavailable` otherwise).
    A connection attempt gives up after :data:`CONNECT_TIMEOUT_S`; a read waits longer than
    SQS's longest long poll (20 s).
    """
    kwargs: dict[str, Any] = {}
    if queue_url is not None:
        check_url(queue_url, "--queue-url")
    if endpoint_url:
        kwargs["endpoint_url"] = check_url(endpoint_url, "--endpoint-url")
        if is_loopback(endpoint_url):
            kwargs.update(FAKE_CREDENTIALS)
    region = region or region_of(queue_url) or boto3.session.Session().region_name or DEFAULT_REGION
    config = Config(retries={"max_attempts": 3, "mode": "standard"}, read_timeout=70, connect_timeout=CONNECT_TIMEOUT_S)
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
