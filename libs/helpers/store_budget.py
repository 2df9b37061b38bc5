"""A time budget for the store operations of one message (contract §6).

Lambda stops an invocation at its deadline without an answer, and SQS then
delivers the whole batch again. So every store operation of a message must end
before the time left runs out, less a reserve to answer in
(:data:`libs.deadline.ANSWER_RESERVE_MS`): a slow store then
fails that message with a clear reason instead of timing out the invocation.

``with store_budget(deadline):`` sets one deadline for everything inside it (the message's
:class:`~libs.deadline.Deadline`, the one type every store and SNS call reads):

* the driver gets it through ``pymongo.timeout`` (client-side operation
  timeout): server selection, each command and each ``getMore`` of a
  streaming cursor are cut at the deadline, and pymongo raises an error whose
  ``timeout`` is true;
* the Data API reader reads it from a context variable (:func:`remaining_s`)
  and bounds each HTTP request, its retries and its backoff by what is left.

Both turn the expiry into :class:`StoreTimeout` (a
:class:`~libs.errors.StoreUnavailable`), whose message names the budget.
``None`` means no budget (a context without a deadline).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import pymongo
from pymongo.errors import ConfigurationError, PyMongoError, ServerSelectionTimeoutError

from libs.deadline import Deadline
from libs.errors import StoreTimeout, StoreUnavailable, StoreUnreachable

#: A selection timeout this close to the budget's deadline is the budget running out, not an outage.
_EXPIRY_SLACK_S = 0.05


_active: ContextVar[Deadline | None] = ContextVar("store_budget", default=None)


@contextmanager
def store_budget(limit: Deadline | float | None) -> Iterator[Deadline | None]:
    """Bound every store operation inside the block by ``limit``: a :class:`~libs.deadline.Deadline`, or
    seconds from now (None, or a deadline of None: no bound).

    Nested budgets can only shorten the deadline, as ``pymongo.timeout`` does.
    A budget that is already spent raises :class:`StoreTimeout` at once: no
    operation could finish in it.
    """
    deadline = limit if isinstance(limit, Deadline) else Deadline.after(limit)
    left = deadline.remaining_s()
    if left is None:
        yield _active.get()
        return
    if left <= 0:
        raise StoreTimeout(f"store time budget exhausted before the first store operation ({left:.3f} s left)")
    outer = _active.get()
    if outer is not None and outer.at is not None and deadline.at is not None and outer.at <= deadline.at:
        deadline = outer
    token = _active.set(deadline)
    try:
        with pymongo.timeout(max(deadline.remaining_s() or 0.0, 1e-3)):
            yield deadline
    finally:
        _active.reset(token)


def active_budget() -> Deadline | None:
    """The store deadline in force in this context, or None."""
    return _active.get()


def remaining_s() -> float | None:
    """Seconds left before the store deadline (may be negative), or None without one."""
    deadline = _active.get()
    return None if deadline is None else deadline.remaining_s()


def budget_expired() -> bool:
    """Whether a store deadline is active and has passed."""
    deadline = _active.get()
    return deadline is not None and deadline.expired()


def timeout_error(doing: str, detail: str = "") -> StoreTimeout:
    """The clear error for a budget that ran out while ``doing`` something (e.g. "reading history")."""
    deadline = _active.get()
    size = f"{deadline.seconds:.1f} s " if deadline is not None and deadline.seconds is not None else ""
    reason = f"store time budget of {size}ran out while {doing}"
    return StoreTimeout(f"{reason} ({detail})" if detail else reason)


def driver_error(exc: PyMongoError, doing: str) -> StoreUnavailable:
    """A pymongo error as the service's error: :class:`StoreTimeout` when the budget cut it.

    pymongo marks every error of a client-side timeout with ``timeout``; a
    server selection timeout is the budget's doing only when the deadline has
    (nearly) passed, otherwise it is the database being unreachable
    (:class:`StoreUnreachable`, as is an Atlas SRV name that does not resolve):
    the batch then lists its remaining messages at once.
    """
    detail = f"{type(exc).__name__}: {exc}"
    if _active.get() is not None and getattr(exc, "timeout", False):
        left = remaining_s()
        if not isinstance(exc, ServerSelectionTimeoutError) or (left is not None and left <= _EXPIRY_SLACK_S):
            return timeout_error(doing, detail)
    unreachable = isinstance(exc, ServerSelectionTimeoutError | ConfigurationError)
    return (StoreUnreachable if unreachable else StoreUnavailable)(f"{doing} failed: {detail}")
