"""The Lambda context object for local runs and tests: one class for both."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class LocalContext:
    """A Lambda context whose remaining time counts down from ``timeout_ms`` in real time.

    One per invocation, as in Lambda: the handler's time budget
    (``ANOMALY_TIME_MARGIN_MS``) reads it before starting each message and
    bounds each store operation by it. ``remaining_ms`` fixes the answer
    instead (a test of the time budget); a list gives successive answers, one
    per call (the last one repeats).
    """

    timeout_ms: int = 120_000
    remaining_ms: int | list[int] | None = None
    function_name: str = "crypto-risk-anomaly-local"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:crypto-risk-anomaly-local"
    aws_request_id: str = "11111111-2222-3333-4444-555555555555"
    log_group_name: str = "/aws/lambda/crypto-risk-anomaly-local"
    log_stream_name: str = "local"
    _started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        if isinstance(self.remaining_ms, list):
            return self.remaining_ms.pop(0) if len(self.remaining_ms) > 1 else self.remaining_ms[0]
        if self.remaining_ms is not None:
            return self.remaining_ms
        return max(0, int(self.timeout_ms - (time.monotonic() - self._started) * 1000))
