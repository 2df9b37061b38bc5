"""The queue pair's settings for local runs, read from ``deploy/queue.yml``.

``deploy/queue.yml`` is plain data that ``serverless.yml`` reads value by value
(``${file(./deploy/queue.yml):KEY}``), so the queue and dead-letter queue the
local pipeline creates are the ones CloudFormation creates. Nothing is
resolved: the file holds no variables. What a deploy takes from a ``--param``
(the function timeout, the redrive count, the batch size and window), a local
command takes from its own options, through :func:`dataclasses.replace`; every
value is checked against the limits SQS and Lambda enforce, however it came.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from libs.errors import ConfigError

#: The data file, at deploy/queue.yml in the repository.
QUEUE_FILE = Path(__file__).resolve().parents[3] / "deploy" / "queue.yml"
#: A queue name SQS accepts (a FIFO queue would end in .fifo; these are standard queues).
_QUEUE_NAME = re.compile(r"[A-Za-z0-9_-]{1,80}")
#: The whole-number settings: the smallest and largest value SQS or Lambda accepts.
_LIMITS = {
    "function_timeout_seconds": (1, 900),
    "visibility_timeout_factor": (1, 43_200),
    "max_receive_count": (1, 1_000),
    "dlq_retention_seconds": (60, 1_209_600),
    "batch_size": (1, 10_000),
    "maximum_batching_window_seconds": (0, 300),
}


@dataclass(frozen=True)
class QueueSettings:
    """The queue pair as declared, checked on construction (also after :func:`dataclasses.replace`)."""

    function_timeout_seconds: int
    visibility_timeout_factor: int
    max_receive_count: int
    dlq_retention_seconds: int
    batch_size: int
    maximum_batching_window_seconds: int
    request_queue_name: str
    dead_letter_queue_name: str

    def __post_init__(self) -> None:
        for name, (smallest, largest) in _LIMITS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not smallest <= value <= largest:
                raise ConfigError(_key(name), f"must be a whole number from {smallest} to {largest}, got {value!r}")
        for name in ("request_queue_name", "dead_letter_queue_name"):
            if not _QUEUE_NAME.fullmatch(getattr(self, name)):
                raise ConfigError(name, f"must be 1-80 letters, digits, '-' or '_', got {getattr(self, name)!r}")
        if self.visibility_timeout_seconds > 43_200:
            raise ConfigError(
                "visibilityTimeoutFactor",
                f"factor x function timeout is {self.visibility_timeout_seconds} s, above SQS's 43200 s",
            )
        if self.batch_size > 10 and self.maximum_batching_window_seconds < 1:
            raise ConfigError("batchSize", "above 10 needs maximumBatchingWindowSeconds of at least 1 (an AWS rule)")

    @property
    def visibility_timeout_seconds(self) -> int:
        """The request queue's visibility timeout: factor × function timeout, as serverless.yml derives it."""
        return self.visibility_timeout_factor * self.function_timeout_seconds

    @property
    def function_timeout_ms(self) -> int:
        return self.function_timeout_seconds * 1000


def _key(name: str) -> str:
    """The file's key for a field: ``max_receive_count`` -> ``maxReceiveCount``."""
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def read_mapping(path: Path, loader: type[yaml.SafeLoader] = yaml.SafeLoader) -> dict[str, Any]:
    """A YAML file that must hold a mapping; :class:`ConfigError` naming the file when it cannot be read."""
    try:
        data = yaml.load(Path(path).read_text(), Loader=loader)
    except OSError as exc:
        raise ConfigError(str(path), f"cannot be read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), f"is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(str(path), "must be a YAML mapping")
    return data


def load_queue_settings(path: Path = QUEUE_FILE, *, stage: str | None = None) -> QueueSettings:
    """The settings of ``path`` for ``stage`` (default: the file's ``stage``), as a deploy without params gets them."""
    data = read_mapping(path)
    numbers: dict[str, Any] = {
        item.name: data.get(_key(item.name)) for item in fields(QueueSettings) if item.name in _LIMITS
    }
    prefix = f"{_text(data, 'service')}-{stage or _text(data, 'stage')}-"
    return QueueSettings(
        **numbers,
        request_queue_name=prefix + _text(data, "requestQueueSuffix"),
        dead_letter_queue_name=prefix + _text(data, "deadLetterQueueSuffix"),
    )


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise ConfigError(key, f"must be a non-empty text in {QUEUE_FILE.name}, got {value!r}")
    return value
