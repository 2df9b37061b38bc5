"""When a message's work must be done: the invocation's deadline, less a reserve to answer.

Lambda gives an invocation a deadline (``context.get_remaining_time_in_millis()``);
contract §6 wants the answer back before it, whatever the store or SNS does.
So each started message gets a :class:`Deadline` ending
:data:`ANSWER_RESERVE_MS` before the invocation's, and every store operation
(:func:`libs.helpers.store_budget.store_budget`) and every SNS call
(:func:`libs.alerts.publish.publish_alerts`) of the message reads what is left
of it with :meth:`Deadline.remaining_s`. A context without the method (or one
that answers ``None``) sets no deadline: local calls and tests that pass no
context.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

#: Time kept back to log, count and return the answer after the message's last operation.
ANSWER_RESERVE_MS = 1_000


@dataclass(frozen=True)
class Deadline:
    """A moment on the monotonic clock (``at``; None: no deadline) and how long it was when set (``seconds``)."""

    at: float | None = None
    seconds: float | None = None

    @classmethod
    def after(cls, seconds: float | None) -> Deadline:
        """The deadline ``seconds`` from now (None: no deadline)."""
        if seconds is None:
            return NO_DEADLINE
        return cls(time.monotonic() + seconds, seconds)

    @classmethod
    def for_message(cls, remaining_ms: float | None) -> Deadline:
        """A message's deadline when the invocation has ``remaining_ms`` left: that, less the answer's reserve."""
        return cls.after(None if remaining_ms is None else (remaining_ms - ANSWER_RESERVE_MS) / 1000)

    def earlier_by(self, seconds: float) -> Deadline:
        """This deadline moved ``seconds`` earlier (time kept for a later step); no deadline stays none."""
        if self.at is None or seconds <= 0:
            return self
        return Deadline(self.at - seconds, None if self.seconds is None else self.seconds - seconds)

    def remaining_s(self) -> float | None:
        """Seconds left (negative once passed), or None without a deadline."""
        return None if self.at is None else self.at - time.monotonic()

    def expired(self) -> bool:
        """Whether there is a deadline and it has passed."""
        left = self.remaining_s()
        return left is not None and left <= 0


NO_DEADLINE = Deadline()


def remaining_ms(context: Any) -> float | None:
    """The context's remaining time in milliseconds, or None when it cannot say."""
    getter = getattr(context, "get_remaining_time_in_millis", None)
    if not callable(getter):
        return None
    value = getter()
    return None if value is None else float(value)
