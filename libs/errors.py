"""The service's error hierarchy: each error says what kind of failure it is and how loud.

Every failure a message can meet is one of these, raised where it is
detected. The batch processor (:mod:`libs.batch`) turns it into one log line
and one batch item failure, reading the policy from the error itself:
``kind`` (the ``failure`` field of the log line), ``log_level`` (``WARNING``
for what is expected and retried, else ``ERROR``), the line's
``log_message``, whether a traceback helps (``traceback``) and whether the
caller, not the service, is at fault (``caller_fault``: an X-Ray *error*
rather than a *fault*). Messages never carry a credential or a connection string.
"""

from __future__ import annotations

import logging
from typing import ClassVar


class AnomalyServiceError(Exception):
    """Base of every error this service raises on purpose."""

    kind: ClassVar[str] = "error"
    log_level: ClassVar[int] = logging.ERROR
    log_message: ClassVar[str] = "message failed"
    traceback: ClassVar[bool] = False
    caller_fault: ClassVar[bool] = False

    def describe(self) -> str:
        """The failure log line's ``reason``: the error's class (what failed) and message (why)."""
        return f"{type(self).__name__}: {self}"


class ConfigError(AnomalyServiceError):
    """A missing or malformed environment variable; names the variable."""

    kind = "config"

    def __init__(self, variable: str, reason: str) -> None:
        super().__init__(f"configuration error in {variable}: {reason}")
        self.variable = variable
        self.reason = reason


class InvalidRequest(AnomalyServiceError):
    """A message body that is not a valid risk request; names the key at fault (the producer's error)."""

    kind = "invalid"
    log_message = "message rejected"
    caller_fault = True

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"invalid request: {key}: {reason}")
        self.key = key
        self.reason = reason

    def describe(self) -> str:
        return str(self)


class StoreUnavailable(AnomalyServiceError):
    """The scores store could not be read or written (network, auth, server error)."""

    kind = "store"


class StoreUnreachable(StoreUnavailable):
    """No server could be reached at all: every later message of the batch would wait the same timeout."""


class StoreTimeout(StoreUnavailable):
    """A store operation did not finish within the time the invocation had left for it."""


class NotAnSqsEvent(AnomalyServiceError, ValueError):
    """The Lambda event is not an SQS batch; the whole invocation is wrong, so it raises."""

    kind = "not_sqs"


class TimeBudgetExhausted(AnomalyServiceError):
    """Too little time left to start a message; SQS will deliver it again. Expected under load: a warning."""

    kind = "time_budget"
    log_level = logging.WARNING
    log_message = "message left for retry"

    def describe(self) -> str:
        return str(self)


class AlertPublishFailed(AnomalyServiceError):
    """SNS did not take every alert of a message (a missing topic, no permission, entries still
    rejected after one retry). The message fails so that SQS delivers it again: its flags are
    rewritten identically and the same alert ids are published again (contract §10)."""

    kind = "alerts"
