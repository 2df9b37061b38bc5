"""The service's error hierarchy.

Every failure a message can meet is one of these, raised where it is detected
and turned into a log line and a batch item failure in one place
(``libs.batch``). Messages never carry a credential or a connection string.
"""

from __future__ import annotations


class AnomalyServiceError(Exception):
    """Base of every error this service raises on purpose."""


class ConfigError(AnomalyServiceError):
    """A missing or malformed environment variable; names the variable."""

    def __init__(self, variable: str, reason: str) -> None:
        super().__init__(f"configuration error in {variable}: {reason}")
        self.variable = variable
        self.reason = reason


class InvalidRequest(AnomalyServiceError):
    """A message body that is not a valid risk request; names the key at fault."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"invalid request: {key}: {reason}")
        self.key = key
        self.reason = reason


class StoreUnavailable(AnomalyServiceError):
    """The scores store could not be read or written (network, auth, server error)."""


class NotAnSqsEvent(AnomalyServiceError, ValueError):
    """The Lambda event is not an SQS batch; the whole invocation is wrong, so it raises."""


class TimeBudgetExhausted(AnomalyServiceError):
    """Too little time left to start a message; SQS will deliver it again."""


class AlertPublishFailed(AnomalyServiceError):
    """SNS did not take every alert of a message (a missing topic, no permission, entries still
    rejected after one retry). The message fails so that SQS delivers it again: its flags are
    rewritten identically and the same alert ids are published again (SPEC section 10)."""
