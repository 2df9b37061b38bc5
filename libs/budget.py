"""How long a message may still take: the invocation's deadline, less a reserve to answer.

Lambda gives an invocation a deadline (``context.get_remaining_time_in_millis()``);
contract §6 wants the answer back before it, whatever the store does. So
each started message gets a :class:`Budget` ending :data:`ANSWER_RESERVE_MS`
before the deadline, and every store operation of the message is bounded by
what is left of it. A context without the method (or one that answers
``None``) sets no deadline: local calls and tests that pass no context.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from libs.errors import StoreUnreachable

#: Time kept back to log, count and return the answer after the last store operation.
ANSWER_RESERVE_MS = 1_000


@dataclass(frozen=True)
class Budget:
    """A deadline on the monotonic clock (``None``: unbounded), and the store outage found so far, if any.

    An outage found by an earlier message of the batch leaves this message no
    store time at all: :meth:`check_store` fails it at once, after its
    request was validated (an invalid body is still rejected for what it is).
    """

    deadline: float | None = None
    outage: StoreUnreachable | None = None

    @classmethod
    def from_remaining(
        cls, remaining: float | None, reserve_ms: int = ANSWER_RESERVE_MS, outage: StoreUnreachable | None = None
    ) -> Budget:
        """The budget left when the invocation has ``remaining`` ms (None: no deadline), read just now."""
        if remaining is None:
            return cls(None, outage)
        return cls(time.monotonic() + (remaining - reserve_ms) / 1000, outage)

    def check_store(self) -> None:
        """Raise :class:`StoreUnreachable` when the batch already found the database unreachable."""
        if self.outage is not None:
            raise StoreUnreachable(f"not started: the database was unreachable for an earlier message ({self.outage})")

    def remaining_ms(self) -> float | None:
        """Milliseconds left before the answer must be on its way (never negative), or None."""
        if self.deadline is None:
            return None
        return max(0.0, (self.deadline - time.monotonic()) * 1000)

    def remaining_s(self) -> float | None:
        """:meth:`remaining_ms` in seconds, as ``pymongo.timeout`` takes it."""
        left = self.remaining_ms()
        return None if left is None else left / 1000


UNBOUNDED = Budget()


def remaining_ms(context: Any) -> float | None:
    """The context's remaining time in milliseconds, or None when it cannot say."""
    getter = getattr(context, "get_remaining_time_in_millis", None)
    if not callable(getter):
        return None
    value = getter()
    return None if value is None else float(value)
