"""The queue settings that ``serverless.yml`` declares in ``custom.queue``, read for local runs.

The deployment and the local pipeline read the same block, so the queue the
demo creates cannot drift from the one CloudFormation creates. The file is
Serverless Framework YAML: CloudFormation short tags (``!GetAtt``, ``!Ref``,
``!Sub``, ``!If`` …) elsewhere in it are loaded as inert :class:`CloudFormationTag`
values, and these variables are resolved the way ``serverless`` resolves them:

- ``${param:NAME, default}``: a value passed in (``--param NAME=VALUE``), else
  ``params.<stage>.NAME`` then ``params.default.NAME`` in the file, else the default;
- ``${opt:stage, default}`` and ``${sls:stage}``: the stage passed in, else
  ``provider.stage`` (``${sls:stage}``), else the default, else ``dev``;
- ``${self:dotted.path}``: another value of the file, itself resolved.

Other sources (``env``, ``ssm``, ``file`` …) cannot be resolved locally: their
default is used when they have one, otherwise the key is reported as an error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from libs.errors import ConfigError

#: serverless.yml at the root of the repository.
SERVERLESS_YML = Path(__file__).resolve().parents[3] / "serverless.yml"
DEFAULT_STAGE = "dev"
#: Innermost variable: no ``$``, ``{`` or ``}`` inside, so nested defaults resolve inside out.
_VARIABLE = re.compile(r"\$\{([^${}]*)\}")
_MAX_DEPTH = 20
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")


@dataclass(frozen=True)
class CloudFormationTag:
    """A CloudFormation short tag such as ``!GetAtt Queue.Arn``: ``tag="!GetAtt"``, ``value="Queue.Arn"``."""

    tag: str
    value: Any


@dataclass(frozen=True)
class QueueSettings:
    """``custom.queue`` resolved and checked against the limits AWS enforces."""

    function_timeout_seconds: int
    visibility_timeout_factor: int
    max_receive_count: int
    dlq_retention_seconds: int
    batch_size: int
    maximum_batching_window_seconds: int
    request_queue_name: str
    dead_letter_queue_name: str

    @property
    def visibility_timeout_seconds(self) -> int:
        """The request queue's visibility timeout: factor × function timeout, as CloudFormation derives it."""
        return self.visibility_timeout_factor * self.function_timeout_seconds

    @property
    def function_timeout_ms(self) -> int:
        return self.function_timeout_seconds * 1000


class _Loader(yaml.SafeLoader):
    """SafeLoader that accepts CloudFormation's short tags instead of failing on them."""


def _short_tag(loader: _Loader, suffix: str, node: yaml.Node) -> CloudFormationTag:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return CloudFormationTag(f"!{suffix}", value)


_Loader.add_multi_constructor("!", _short_tag)


def read_serverless(path: Path = SERVERLESS_YML) -> dict[str, Any]:
    """The file as a mapping; short tags become :class:`CloudFormationTag`."""
    try:
        document = yaml.load(Path(path).read_text(), Loader=_Loader)
    except OSError as exc:
        raise ConfigError(str(path), f"cannot be read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), f"is not valid YAML: {exc}") from None
    if not isinstance(document, dict):
        raise ConfigError(str(path), "must be a YAML mapping")
    return document


class _Resolver:
    """Resolves Serverless variables in values of one document."""

    def __init__(self, document: dict[str, Any], stage: str | None, params: Mapping[str, str]) -> None:
        self._document = document
        self._stage = stage
        self._params = dict(params)

    def value(self, dotted_path: str, depth: int = 0) -> Any:
        """The value at ``dotted_path``, with every variable in it resolved."""
        node: Any = self._document
        for part in dotted_path.split("."):
            if not isinstance(node, dict) or part not in node:
                raise ConfigError(dotted_path, "is not set in serverless.yml")
            node = node[part]
        return self.resolve(node, dotted_path, depth)

    def resolve(self, value: Any, where: str, depth: int = 0) -> Any:
        if depth > _MAX_DEPTH:
            raise ConfigError(where, "variables refer to each other in a cycle")
        if isinstance(value, dict):
            return {key: self.resolve(item, f"{where}.{key}", depth) for key, item in value.items()}
        if not isinstance(value, str):
            return value
        text: Any = value
        while isinstance(text, str) and (match := _VARIABLE.search(text)):
            resolved = self._variable(match.group(1).strip(), where, depth + 1)
            if match.span() == (0, len(text)):
                text = resolved  # a whole-value variable keeps its type (120 stays a number)
            else:
                text = text[: match.start()] + str(resolved) + text[match.end() :]
        return text

    def stage(self, depth: int) -> str:
        if self._stage:
            return self._stage
        provider = self._document.get("provider")
        if isinstance(provider, dict) and provider.get("stage") not in (None, ""):
            return str(self.resolve(provider["stage"], "provider.stage", depth + 1))
        return DEFAULT_STAGE

    def _variable(self, expression: str, where: str, depth: int) -> Any:
        reference, has_default, default_text = expression.partition(",")
        source, _, address = reference.strip().partition(":")
        default = _scalar(default_text) if has_default else None
        if source == "self":
            return self.value(address.strip(), depth)
        if source == "sls" and address.strip() == "stage":
            return self.stage(depth)
        if source == "opt" and address.strip() == "stage":
            return self._stage or (default if has_default else DEFAULT_STAGE)
        if source == "param":
            found = self._param(address.strip(), depth)
            if found is not None:
                return found
        if has_default:
            return default
        raise ConfigError(where, f"cannot resolve ${{{expression}}} locally and it has no default")

    def _param(self, name: str, depth: int) -> Any:
        if name in self._params:
            return self._params[name]
        params = self._document.get("params")
        if isinstance(params, dict):
            for scope in (self.stage(depth), "default"):
                block = params.get(scope)
                if isinstance(block, dict) and block.get(name) is not None:
                    return self.resolve(block[name], f"params.{scope}.{name}", depth + 1)
        return None


def _scalar(text: str) -> Any:
    """A variable's default as Serverless reads it: quoted is a string, bare is a YAML scalar."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return yaml.safe_load(text) if text else ""


def _whole(settings: Mapping[str, Any], key: str, minimum: int, maximum: int) -> int:
    value = settings.get(key)
    where = f"serverless.yml custom.queue.{key}"
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(where, f"must be a whole number, got {value!r}")
    if not minimum <= value <= maximum:
        raise ConfigError(where, f"must be from {minimum} to {maximum}, got {value}")
    return value


def _queue_name(settings: Mapping[str, Any], key: str) -> str:
    value = settings.get(key)
    if not isinstance(value, str) or not _QUEUE_NAME.match(value):
        raise ConfigError(
            f"serverless.yml custom.queue.{key}",
            f"must be a queue name of 1-80 letters, digits, '-' or '_', got {value!r}",
        )
    return value


def load_queue_settings(
    path: Path = SERVERLESS_YML, *, stage: str | None = None, params: Mapping[str, str] | None = None
) -> QueueSettings:
    """``custom.queue`` of ``path`` for ``stage``, with ``params`` standing in for ``--param``."""
    resolver = _Resolver(read_serverless(path), stage, params or {})
    block = resolver.value("custom.queue")
    if not isinstance(block, dict):
        raise ConfigError("serverless.yml custom.queue", "must be a mapping of queue settings")
    settings = QueueSettings(
        function_timeout_seconds=_whole(block, "functionTimeoutSeconds", 1, 900),
        visibility_timeout_factor=_whole(block, "visibilityTimeoutFactor", 1, 43_200),
        max_receive_count=_whole(block, "maxReceiveCount", 1, 1_000),
        dlq_retention_seconds=_whole(block, "dlqRetentionSeconds", 60, 1_209_600),
        batch_size=_whole(block, "batchSize", 1, 10_000),
        maximum_batching_window_seconds=_whole(block, "maximumBatchingWindowSeconds", 0, 300),
        request_queue_name=_queue_name(block, "requestQueueName"),
        dead_letter_queue_name=_queue_name(block, "deadLetterQueueName"),
    )
    if settings.visibility_timeout_seconds > 43_200:
        raise ConfigError(
            "serverless.yml custom.queue.visibilityTimeoutFactor",
            f"factor × function timeout is {settings.visibility_timeout_seconds} s, above SQS's 43200 s",
        )
    if settings.batch_size > 10 and settings.maximum_batching_window_seconds < 1:
        raise ConfigError(
            "serverless.yml custom.queue.batchSize",
            "above 10 needs maximumBatchingWindowSeconds of at least 1 (an AWS rule)",
        )
    return settings
