"""The deployed function's entry point, found the way Lambda finds it: by the name in serverless.yml.

Local runs (``invoke``, ``poll``, the demo) call the same handler Lambda
would, so they resolve ``functions.<name>.handler`` (``module.attribute``)
from ``serverless.yml`` and import it at run time, as ``serverless invoke
local`` does. Importing it is the function's cold start: configuration is
read then. ``libs/`` therefore never imports the entry point by name.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from libs.errors import ConfigError
from libs.tools.local.queue_settings import read_mapping

#: serverless.yml at the root of the repository.
SERVERLESS_YML = Path(__file__).resolve().parents[3] / "serverless.yml"

Handler = Callable[[Any, Any], Any]


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads CloudFormation's short tags (``!GetAtt``, ``!Ref`` …) elsewhere in the file as None."""


_Loader.add_multi_constructor("!", lambda loader, suffix, node: None)


def handler_path(path: Path = SERVERLESS_YML) -> str:
    """The one function's ``handler`` setting, e.g. ``handler.handler`` (a literal: nothing is resolved)."""
    functions = read_mapping(path, _Loader).get("functions") or {}
    if len(functions) != 1:
        raise ConfigError("functions", f"{path.name} must declare exactly one function, found {len(functions)}")
    (function,) = functions.values()
    target = function.get("handler") if isinstance(function, dict) else None
    if not isinstance(target, str) or "." not in target:
        raise ConfigError("functions.handler", f"expected module.attribute in {path.name}, got {target!r}")
    return target


def load_handler(path: Path = SERVERLESS_YML) -> Handler:
    """The deployed handler callable (imports its module: a cold start, the first time)."""
    module_name, _, attribute = handler_path(path).rpartition(".")
    handler: Handler = getattr(importlib.import_module(module_name), attribute)
    return handler
