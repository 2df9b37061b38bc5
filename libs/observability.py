"""The one home of logging, tracing and metrics: every module imports these objects.

- ``logger``: Powertools' JSON logger. :func:`tag_message` puts the SQS
  messageId (and, once known, the ``request_id``) on every line about a
  message and takes them off afterwards.
- ``tracer``: Powertools' X-Ray tracer. Outside Lambda (no
  ``LAMBDA_TASK_ROOT``) it disables the SDK, so local runs and tests are
  quiet. Only pymongo is patched at cold start (every MongoDB command becomes
  a subsegment); ``requests`` is patched by the Data API reader, the only code
  that imports it. :func:`traced` opens our own subsegments.
- ``metrics``: Powertools' CloudWatch embedded metric format (EMF), one blob
  per invocation with the ``service`` dimension; :data:`signal_metrics` adds
  one blob per signal with a ``signal`` dimension. :func:`publish_metrics`
  flushes both (and the cold-start metric) when the handler returns.

The service name and namespace come from configuration (:func:`configure`, at cold start).
"""

from __future__ import annotations

import functools
import logging
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from libs.helpers.constants_helper import Settings, default

#: Log keys that belong to one message; removed when the message is done.
MESSAGE_LOG_KEYS = ("message_id", "request_id")

# Built before the settings are read (every module imports them); configure() names the service.
logger = Logger(service=default("service_name"))
tracer = Tracer(service=default("service_name"), patch_modules=("pymongo",))
metrics = Metrics(service=default("service_name"), namespace=default("metrics_namespace"))

Handler = TypeVar("Handler", bound=Callable[..., Any])


def configure(settings: Settings) -> None:
    """Name the service (``POWERTOOLS_SERVICE_NAME``) and the metrics namespace; called at cold start.

    ``settings.service_name`` is the one value: it becomes every log line's
    ``service`` key, the tracer's service (the handler segment's ``Service``
    annotation and metadata namespace), every EMF blob's ``service`` dimension
    (per-signal blobs too) and MongoDB's ``appname``.
    """
    name = settings.service_name
    metrics.namespace = settings.metrics_namespace
    metrics.service = name
    tracer.service = name
    logger.service = name
    # clear_state (inject_lambda_context(clear_state=True)) restores the logger's default keys.
    logger._default_log_keys["service"] = name
    logger.append_keys(service=name)


def service_name() -> str:
    """The configured service name (the namespace of our X-Ray metadata)."""
    return str(metrics.service)


def tag_message(message_id: str) -> None:
    """From here until :func:`untag_message`, every log line carries ``message_id``."""
    logger.append_keys(message_id=message_id)


def untag_message() -> None:
    """Take a message's keys (its ``message_id`` and ``request_id``) off the log lines."""
    logger.remove_keys(MESSAGE_LOG_KEYS)


@contextmanager
def logs_to(stream: Any) -> Iterator[None]:
    """Send the logger's JSON lines to ``stream`` for the block (local commands, tests).

    The stream is swapped in place, not with ``setStream``, which would flush
    the previous stream first, and that one may be closed already (a test's capture).
    """
    handler = cast(logging.StreamHandler, logger.registered_handler)
    previous, handler.stream = handler.stream, stream
    try:
        yield
    finally:
        handler.stream = previous


def tag_request(request_id: str) -> None:
    """From here until the message is done, log lines also carry its ``request_id``."""
    logger.append_keys(request_id=request_id)


class _Untraced:
    """Stands in for a subsegment when the SDK could not open one: annotations go nowhere."""

    def put_annotation(self, key: str, value: Any) -> None:
        pass

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        pass


@contextmanager
def traced(name: str) -> Iterator[Any]:
    """An X-Ray subsegment around a block; yields it for annotations.

    A rejected request is the producer's error, not ours: its subsegment is
    marked ``error`` (X-Ray's client-error flag) instead of ``fault``, so a
    fault filter or alarm shows only what ops must act on.
    """
    recorder: Any = tracer.provider  # the X-Ray recorder (typed as Powertools' provider base)
    subsegment = recorder.begin_subsegment(name)
    if subsegment is None:
        yield _Untraced()
        return
    try:
        yield subsegment
    except Exception as exc:
        subsegment.add_exception(exc, traceback.extract_tb(exc.__traceback__, limit=recorder.max_trace_back))
        if getattr(exc, "caller_fault", False):
            subsegment.fault = False
            subsegment.add_error_flag()
        raise
    finally:
        recorder.end_subsegment()


@contextmanager
def message_segment(message_id: str) -> Iterator[Any]:
    """The ``## message`` subsegment that holds one message's steps, annotated with its messageId."""
    with traced("## message") as subsegment:
        annotate(subsegment, message_id=message_id)
        yield subsegment


def annotate(subsegment: Any, **annotations: str | int | float | bool) -> None:
    """Annotations (indexed, filterable in the X-Ray console) on one subsegment."""
    for key, value in annotations.items():
        subsegment.put_annotation(key, value)


class SignalMetrics:
    """Metrics with a ``signal`` dimension: one EMF blob per signal, published with the invocation's.

    Powertools' ``Metrics`` holds one dimension set per blob, so per-signal
    values get their own ``EphemeralMetrics`` each (same namespace and service).
    """

    def __init__(self) -> None:
        self._by_signal: dict[str, EphemeralMetrics] = {}

    def add(self, signal: str, name: str, unit: MetricUnit, value: float) -> None:
        blob = self._by_signal.get(signal)
        if blob is None:
            blob = EphemeralMetrics(namespace=metrics.namespace, service=metrics.service)
            blob.add_dimension(name="signal", value=signal)
            self._by_signal[signal] = blob
        blob.add_metric(name=name, unit=unit, value=value)

    def flush(self) -> None:
        blobs, self._by_signal = self._by_signal, {}
        for blob in blobs.values():
            blob.flush_metrics()


signal_metrics = SignalMetrics()


def publish_metrics(handler: Handler) -> Handler:
    """Decorator: print the invocation's EMF blobs (and ``ColdStart`` once per container) when it ends."""

    @functools.wraps(handler)
    def publishing(event: Any, context: Any) -> Any:
        try:
            return handler(event, context)
        finally:
            signal_metrics.flush()

    return metrics.log_metrics(publishing, capture_cold_start_metric=True)  # type: ignore[return-value]
