"""The one home of logging and tracing: every module imports these objects.

Outside Lambda (no ``LAMBDA_TASK_ROOT``) Powertools' tracer disables itself,
so local runs and tests are quiet. Only pymongo is patched at cold start;
``requests`` is patched by the Data API reader, which is the only code that
imports it.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Tracer

SERVICE_NAME = "crypto-risk-anomaly"

logger = Logger(service=SERVICE_NAME)
tracer = Tracer(service=SERVICE_NAME, patch_modules=("pymongo",))
