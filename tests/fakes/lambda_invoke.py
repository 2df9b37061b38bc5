"""Invoke ``handler.handler`` in a process of its own, the way the Lambda runtime does.

    python -m tests.fakes.lambda_invoke INVOCATIONS.json

For tests whose environment must be set before anything is imported (the
Lambda variables that switch X-Ray on, a configuration with secrets) and
whose global state (the X-Ray recorder, the cold-start flag) must not leak
into other tests. ``INVOCATIONS.json`` is a list of
``{"trace_header": …, "request_id": …, "event": …}``; like the runtime, this
sets ``_X_AMZN_TRACE_ID`` before each invocation. After each one it prints a
line ``<MARKER> {"invocation": i, "response": …}``, and at the end
``<MARKER> {"modules": […]}`` listing the loaded ``requests`` modules.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

MARKER = "=== lambda_invoke"


def main(path: str) -> int:
    invocations = json.loads(Path(path).read_text())
    import handler
    from libs.tools.local.lambda_context import LocalContext

    for number, invocation in enumerate(invocations):
        os.environ["_X_AMZN_TRACE_ID"] = invocation["trace_header"]
        context = LocalContext(aws_request_id=invocation["request_id"])
        response: Any = handler.handler(invocation["event"], context)
        print(MARKER, json.dumps({"invocation": number, "response": response}), flush=True)
    loaded = sorted(name for name in sys.modules if name == "requests" or name.startswith("requests."))
    print(MARKER, json.dumps({"modules": loaded}), flush=True)
    return 0


def split_output(stdout: str) -> tuple[list[list[str]], list[dict[str, Any]], list[str]]:
    """The output lines of each invocation, the marker payloads, and what followed the last invocation."""
    per_invocation: list[list[str]] = []
    markers: list[dict[str, Any]] = []
    current: list[str] = []
    for line in stdout.splitlines():
        if line.startswith(MARKER):
            markers.append(json.loads(line[len(MARKER) :]))
            if "invocation" in markers[-1]:
                per_invocation.append(current)
                current = []
        else:
            current.append(line)
    return per_invocation, markers, current


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
