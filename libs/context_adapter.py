"""Any Lambda context made complete enough for Powertools (contract §6: "any context works").

Powertools' ``inject_lambda_context`` reads ``function_name``,
``memory_limit_in_mb``, ``invoked_function_arn`` and ``aws_request_id`` before
the handler runs, so a caller passing ``None`` or a bare object with only
``get_remaining_time_in_millis`` would crash before any answer. Such a context
is wrapped with placeholders; its remaining time (if it has one) still counts.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

Handler = TypeVar("Handler", bound=Callable[..., Any])

#: The attributes Powertools' logger reads from a context, with what a partial context gets instead.
PLACEHOLDERS: dict[str, Any] = {
    "function_name": "unknown",
    "memory_limit_in_mb": 0,
    "invoked_function_arn": "unknown",
    "aws_request_id": "unknown",
}


@dataclass(frozen=True)
class CompletedContext:
    """A partial context with placeholders for what it lacks; delegates the remaining time."""

    original: Any
    function_name: str
    memory_limit_in_mb: int
    invoked_function_arn: str
    aws_request_id: str

    def get_remaining_time_in_millis(self) -> int | None:
        getter = getattr(self.original, "get_remaining_time_in_millis", None)
        return getter() if callable(getter) else None


def complete_context(context: Any) -> Any:
    """``context`` itself when it has every field Powertools reads, else a :class:`CompletedContext`."""
    if all(hasattr(context, name) for name in PLACEHOLDERS):
        return context
    return CompletedContext(
        original=context, **{name: getattr(context, name, default) for name, default in PLACEHOLDERS.items()}
    )


def accepts_any_context(handler: Handler) -> Handler:
    """Decorator (outermost): the handler sees a context Powertools can read, whatever the caller passed."""

    @functools.wraps(handler)
    def completing(event: Any, context: Any) -> Any:
        return handler(event, complete_context(context))

    return completing  # type: ignore[return-value]
