"""The Lambda context object for local runs."""

from __future__ import annotations

import time
import uuid


class LocalContext:
    """A Lambda context whose remaining time counts down from ``timeout_ms`` in real time.

    One per invocation, as in Lambda: the handler's time budget
    (``ANOMALY_TIME_MARGIN_MS``) reads it before starting each message.
    """

    def __init__(self, timeout_ms: int = 120_000, function_name: str = "crypto-risk-anomaly-local") -> None:
        self._deadline = time.monotonic() + timeout_ms / 1000
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = 1024
        self.invoked_function_arn = f"arn:aws:lambda:local:000000000000:function:{function_name}"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))
