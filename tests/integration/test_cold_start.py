"""What a cold start imports: the Lambda path loads no test, demo or HTTP library it does not need."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from tests.conftest import REPO

NOT_ON_THE_LAMBDA_PATH = ("requests", "mongomock", "moto", "boto3", "matplotlib")


def _imported_after_import_handler(env: dict[str, str]) -> set[str]:
    code = "import sys, json, handler; print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MONGODB_", "AWS_", "POWERTOOLS_", "LAMBDA_"))}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env={**clean, **env}, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_importing_the_handler_with_the_driver_configuration_imports_none_of_the_optional_libraries():
    # given the environment of a deployed function reading with the driver (no connection is made at import)
    env = {
        "AWS_LAMBDA_FUNCTION_NAME": "crypto-risk-anomaly",
        "LAMBDA_TASK_ROOT": str(REPO),
        "AWS_REGION": "us-east-1",
        "MONGODB_RSKYCLUSTER_HOST": "cluster0.example.mongodb.net",
        "MONGODB_RSKYCLUSTER_DATABASE_USER_NAME": "u",
        "MONGODB_RSKYCLUSTER_DATABASE_USER_PASSWORD": "p",
        "MONGODB_RSKYCLUSTER_DATABASE": "risk",
        "MONGODB_RSKYCLUSTER_COINGECKO_ONCHAIN_SCORES_COLLECTION": "scores",
    }

    # when a fresh interpreter imports the handler
    imported = _imported_after_import_handler(env)

    # then the service's own run-time libraries are there and none of the optional ones is
    assert {"handler", "pandas", "pymongo", "aws_lambda_powertools"} <= imported
    assert imported.isdisjoint(NOT_ON_THE_LAMBDA_PATH), imported & set(NOT_ON_THE_LAMBDA_PATH)


def test_the_embedded_store_is_not_imported_before_it_is_used():
    imported = _imported_after_import_handler({"MONGODB_URI": "mongomock://"})
    assert "mongomock" not in imported


_ONE_MESSAGE = """
import json, sys
from datetime import datetime, timedelta
import handler
from libs.helpers.constants_helper import get_settings
from libs.helpers.mongodb_helper import get_collection
from libs.processor import process_message
end = datetime(2024, 11, 1)
get_collection().insert_many(
    [{"coin_id": "a", "timestamp": end - timedelta(hours=h), "volume": 100.0 if h == 0 else float(h % 5)} for h in range(200)]
)
summary = process_message(json.dumps({"as_of": end.isoformat()}), "m", get_settings(), now=end)
print(json.dumps({"anomalies": summary.anomalies_total, "modules": sorted(sys.modules)}))
"""


def test_with_alerts_off_a_flagged_message_imports_nothing_for_alerts():
    # given the embedded store and ALERT_TOPIC_ARN unset
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MONGODB_", "AWS_", "ALERT_", "LAMBDA_"))}
    # when a fresh interpreter processes a message whose newest value is flagged
    done = subprocess.run(
        [sys.executable, "-c", _ONE_MESSAGE],
        cwd=REPO,
        env={**clean, "MONGODB_URI": "mongomock://"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # then nothing of the alerts (contract §10) was loaded: no SNS client, no boto3, not even our modules
    assert result["anomalies"] > 0
    loaded = [m for m in result["modules"] if m.startswith(("libs.alerts", "libs.models.starts", "boto3"))]
    assert loaded == []


def test_with_alerts_on_boto3_waits_for_the_first_alert():
    imported = _imported_after_import_handler(
        {"MONGODB_URI": "mongomock://", "ALERT_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:alerts"}
    )
    assert "boto3" not in imported


def test_without_the_embedded_store_mongomock_stops_the_cold_start_naming_the_variable(tmp_path):
    # given the service as the package ships it: handler.py and libs/ without the tools
    shutil.copy(REPO / "handler.py", tmp_path / "handler.py")
    shutil.copytree(REPO / "libs", tmp_path / "libs", ignore=shutil.ignore_patterns("tools", "cli.py", "__pycache__"))
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MONGODB_", "AWS_", "ALERT_", "LAMBDA_"))}

    # when a fresh interpreter imports the handler with MONGODB_URI=mongomock://
    done = subprocess.run(
        [sys.executable, "-c", "import handler"],
        cwd=tmp_path,
        env={**clean, "MONGODB_URI": "mongomock://", "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )

    # then the cold start stops with a configuration error naming the variable and what is missing
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert "ConfigError" in last and "MONGODB_URI" in last and "libs.tools.embedded_store is missing" in last


def test_reading_the_settings_needs_no_numpy():
    # given: deploy/variables.js asks the machine's plain python3 for the settings' defaults while packaging
    code = (
        "import sys, json; from libs.helpers.constants_helper import SIGNALS, default;"
        " print(json.dumps([default('service_name'), sorted(m.split('.')[0] for m in sys.modules)]))"
    )
    # when a fresh interpreter reads them
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    # then nothing heavier than the standard library was loaded (a bare python3 has no numpy)
    assert done.returncode == 0, done.stderr
    service, modules = json.loads(done.stdout)
    assert service == "crypto-risk-anomaly" and not {"numpy", "pandas", "pymongo"} & set(modules)
