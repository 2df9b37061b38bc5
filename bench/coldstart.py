"""Cold start: whole-process time of ``import handler`` with the Lambda environment set.

Compared, in the same run and interleaved, with a process that only imports
the four run-time libraries the handler cannot do without (pandas, pymongo,
aws-xray-sdk, Powertools). Each figure is the median over fresh interpreters.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

#: What a deployed function sees (no credentials: the import must not connect anywhere).
LAMBDA_ENV = {
    "AWS_LAMBDA_FUNCTION_NAME": "crypto-risk-anomaly",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
    "LAMBDA_TASK_ROOT": str(REPO),
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "MONGODB_RSKYCLUSTER_HOST": "cluster0.example.mongodb.net",
    "MONGODB_RSKYCLUSTER_DATABASE_USER_NAME": "bench",
    "MONGODB_RSKYCLUSTER_DATABASE_USER_PASSWORD": "not-a-secret",
    "MONGODB_RSKYCLUSTER_DATABASE": "risk",
    "MONGODB_RSKYCLUSTER_COINGECKO_ONCHAIN_SCORES_COLLECTION": "scores",
    "POWERTOOLS_SERVICE_NAME": "crypto-risk-anomaly",
}

HANDLER = "import handler"
LIBRARIES = "import pandas, pymongo, aws_xray_sdk.core, aws_lambda_powertools"


def lambda_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MONGODB_", "AWS_", "POWERTOOLS_", "_X_AMZN"))}
    env.update(LAMBDA_ENV)
    return env


def _once(code: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=REPO, env=lambda_env(), check=True)
    return time.perf_counter() - started


def measure(repetitions: int = 9) -> dict[str, float]:
    """Median seconds of each import, interleaved so both see the same machine load."""
    _once(HANDLER)  # compile .pyc files once, as the deployment package ships them
    handler, libraries = [], []
    for _ in range(repetitions):
        handler.append(_once(HANDLER))
        libraries.append(_once(LIBRARIES))
    return {
        "handler_s": statistics.median(handler),
        "libraries_s": statistics.median(libraries),
        "ratio": statistics.median(handler) / statistics.median(libraries),
    }
