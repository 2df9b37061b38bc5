"""The packaged production system: serverless.yml as CloudFormation, its zip, and the framework's runs.

`make package` runs `serverless package` with the params of deploy/ci.params, then this module
against what it left in .serverless/. Without a packaged template (a plain `make test`) every test
here skips with the reason; with REQUIRE_PACKAGED_TEMPLATE=1 (set by `make package`, so CI) a
missing template or tool fails instead, so the checks cannot be skipped silently.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import zipfile
from typing import Any

import pytest

from tests.conftest import REPO
from tests.fakes.sqs import failed_ids

SERVERLESS_DIR = REPO / ".serverless"
TEMPLATE = SERVERLESS_DIR / "cloudformation-template-update-stack.json"
PACKAGE = SERVERLESS_DIR / "crypto-risk-anomaly.zip"
SLS = REPO / "deploy" / "sls"
CI_PARAMS = REPO / "deploy" / "ci.params"
REQUIRED = os.environ.get("REQUIRE_PACKAGED_TEMPLATE") == "1"
LAMBDA_UNZIPPED_LIMIT_BYTES = 262_144_000
FUNCTION = "AnomalyLambdaFunction"
#: The queue block that the local pipeline reads too (the shared contract): exactly these keys.
QUEUE_CONTRACT_KEYS = {
    "functionTimeoutSeconds",
    "visibilityTimeoutFactor",
    "maxReceiveCount",
    "dlqRetentionSeconds",
    "batchSize",
    "maximumBatchingWindowSeconds",
    "requestQueueName",
    "deadLetterQueueName",
}
#: SPEC section 7, written out here rather than read from the code under test.
SPEC_VARIABLES = {
    "MONGODB_URI",
    "MONGODB_RSKYCLUSTER_HOST",
    "MONGODB_RSKYCLUSTER_DATABASE_USER_NAME",
    "MONGODB_RSKYCLUSTER_DATABASE_USER_PASSWORD",
    "MONGODB_RSKYCLUSTER_DATABASE",
    "MONGODB_RSKYCLUSTER_COINGECKO_ONCHAIN_SCORES_COLLECTION",
    "MONGODB_READ_BACKEND",
    "MONGODB_RSKYCLUSTER_REGION",
    "MONGODB_RSKYCLUSTER_DATA_API_APP_ID",
    "MONGODB_RSKYCLUSTER_DATA_API_KEY",
    "MONGODB_RSKYCLUSTER_DATA_SOURCE",
    "MONGODB_DATA_API_URL",
    "QUANTILE_DEVIATION_LIMIT",
    "ANOMALY_PERIODS",
    "ANOMALY_MIN_OBSERVATIONS",
    "ANOMALY_LATEST_LOOKBACK_HOURS",
    "ANOMALY_MAX_RANGE_DAYS",
    "ANOMALY_TIME_MARGIN_MS",
}


def _missing(what: str) -> None:
    reason = f"{what}: run `make package` (serverless package, offline) to check serverless.yml"
    if REQUIRED:
        pytest.fail(f"REQUIRE_PACKAGED_TEMPLATE=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    if not TEMPLATE.is_file():
        _missing(f"no packaged template at {TEMPLATE.relative_to(REPO)}")
    return json.loads(TEMPLATE.read_text())


@pytest.fixture(scope="module")
def resources(template) -> dict[str, Any]:
    return template["Resources"]


@pytest.fixture(scope="module")
def function(resources) -> dict[str, Any]:
    return resources[FUNCTION]["Properties"]


@pytest.fixture(scope="module")
def ci_params() -> dict[str, str]:
    """The NAME=value lines that `make package` passed as --param."""
    lines = (line.strip() for line in CI_PARAMS.read_text().splitlines())
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def _param_args(params: dict[str, str]) -> list[str]:
    return [f"--param={name}={value}" for name, value in params.items()]


@pytest.fixture(scope="module")
def sls(template):
    """Runs the project's pinned Serverless Framework (deploy/sls) and returns the finished process.

    Needs what `make package` installs, so it skips (or fails) with the template's tests.
    """
    if not (REPO / "node_modules" / ".bin" / "serverless").exists():
        _missing("the Serverless Framework is not installed (node_modules)")

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(SLS), *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=240,
            env={**os.environ, **(env or {})},
        )

    return run


def _statements(resources: dict[str, Any]) -> list[dict[str, Any]]:
    role = resources["IamRoleLambdaExecution"]["Properties"]
    return [statement for policy in role["Policies"] for statement in policy["PolicyDocument"]["Statement"]]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# --- the queue and its dead-letter queue -------------------------------------------------------


def test_request_queue_redrives_to_the_dlq_after_five_receives(resources):
    # given the packaged template, when its request queue is read
    redrive = resources["RequestQueue"]["Properties"]["RedrivePolicy"]
    # then failures go to the DLQ after maxReceiveCount receives (AWS suggests at least 5)
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
    assert redrive["maxReceiveCount"] == 5


def test_visibility_timeout_is_six_times_the_function_timeout(resources, function):
    visibility = resources["RequestQueue"]["Properties"]["VisibilityTimeout"]
    assert function["Timeout"] == 120
    assert visibility == 6 * function["Timeout"]


def test_dlq_keeps_messages_fourteen_days_and_both_queues_are_encrypted(resources):
    dlq = resources["DeadLetterQueue"]["Properties"]
    assert dlq["MessageRetentionPeriod"] == 14 * 24 * 3600
    assert dlq["SqsManagedSseEnabled"] is True
    assert resources["RequestQueue"]["Properties"]["SqsManagedSseEnabled"] is True


def test_an_alarm_watches_the_dlq_and_notifies_the_given_topic(resources, ci_params):
    alarm = resources["DeadLetterQueueAlarm"]
    props = alarm["Properties"]
    assert alarm["Type"] == "AWS::CloudWatch::Alarm"
    assert (props["Namespace"], props["MetricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert props["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]}}]
    # one visible message is enough to alarm
    assert (props["ComparisonOperator"], props["Threshold"]) == ("GreaterThanThreshold", 0)
    assert props["AlarmActions"] == [ci_params["ALARM_TOPIC_ARN"]]
    assert props["OKActions"] == [ci_params["ALARM_TOPIC_ARN"]]


def test_outputs_name_both_queues_urls_and_arns(template):
    outputs = template["Outputs"]
    assert outputs["RequestQueueUrl"]["Value"] == {"Ref": "RequestQueue"}
    assert outputs["RequestQueueArn"]["Value"] == {"Fn::GetAtt": ["RequestQueue", "Arn"]}
    assert outputs["DeadLetterQueueUrl"]["Value"] == {"Ref": "DeadLetterQueue"}
    assert outputs["DeadLetterQueueArn"]["Value"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}


# --- the function and its trigger ---------------------------------------------------------------


def test_function_runs_python_312_on_x86_with_tracing_and_the_defaults(function):
    assert function["Handler"] == "handler.handler"
    assert function["Runtime"] == "python3.12"
    assert function["Architectures"] == ["x86_64"]
    assert function["MemorySize"] == 1024
    assert function["TracingConfig"] == {"Mode": "Active"}


def test_function_logs_are_kept_for_a_bounded_period(resources):
    log_group = resources["AnomalyLogGroup"]["Properties"]
    assert log_group["LogGroupName"] == "/aws/lambda/crypto-risk-anomaly-dev-anomaly"
    assert log_group["RetentionInDays"] == 30


def test_function_runs_in_the_vpc_given_by_params(function, ci_params):
    vpc = function["VpcConfig"]
    assert vpc["SecurityGroupIds"] == ci_params["SECURITY_GROUP_IDS"].split(",")
    assert vpc["SubnetIds"] == ci_params["SUBNET_IDS"].split(",")


def test_every_configuration_variable_is_wired_from_a_param(function, ci_params):
    variables = function["Environment"]["Variables"]
    # every variable of SPEC section 7, and every one the configuration module reads
    read_by_code = set(
        re.findall(
            r'"((?:MONGODB|ANOMALY|QUANTILE|POWERTOOLS)_[A-Z0-9_]+)"',
            (REPO / "libs" / "helpers" / "constants_helper.py").read_text(),
        )
    )
    assert SPEC_VARIABLES <= read_by_code, "the configuration module no longer reads a SPEC variable"
    assert read_by_code - set(variables) == set()
    # the values are the params given, verbatim (a dynamic reference for the password included)
    for name in SPEC_VARIABLES & set(ci_params):
        assert variables[name] == ci_params[name], name
    assert variables["MONGODB_RSKYCLUSTER_DATABASE_USER_PASSWORD"].startswith("{{resolve:secretsmanager:")
    # and a variable no param names is empty: the function falls back to its own default
    assert variables["ANOMALY_PERIODS"] == ""


def test_sqs_trigger_reports_partial_batch_failures_with_the_param_settings(resources):
    mappings = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::Lambda::EventSourceMapping"]
    assert len(mappings) == 1
    mapping = mappings[0]
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["RequestQueue", "Arn"]}
    assert mapping["FunctionName"] == {"Fn::GetAtt": [FUNCTION, "Arn"]}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BatchSize"] == 10
    assert mapping["MaximumBatchingWindowInSeconds"] == 0
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": 5}


# --- IAM ---------------------------------------------------------------------------------------


def test_sqs_permissions_are_the_mappings_three_on_the_request_queue_only(resources):
    statements = _statements(resources)
    sqs = [s for s in statements if any(a.lower().startswith("sqs:") for a in _as_list(s["Action"]))]
    assert len(sqs) == 1
    assert sorted(sqs[0]["Action"]) == ["sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ReceiveMessage"]
    assert _as_list(sqs[0]["Resource"]) == [{"Fn::GetAtt": ["RequestQueue", "Arn"]}]


def test_role_grants_no_wildcard_action_no_send_and_no_secret_reads(resources):
    role = resources["IamRoleLambdaExecution"]["Properties"]
    actions = [a.lower() for s in _statements(resources) for a in _as_list(s["Action"])]
    assert all(s["Effect"] == "Allow" for s in _statements(resources))
    assert not [a for a in actions if "*" in a]
    assert "sqs:sendmessage" not in actions
    # secrets reach the function as deploy-time environment values: it reads none at run time
    assert not [a for a in actions if a.startswith(("ssm:", "secretsmanager:", "kms:"))]
    # no managed policy (AWSLambdaVPCAccessExecutionRole would add logs:* on every log group)
    assert role.get("ManagedPolicyArns") == []


def test_wildcard_resources_are_only_where_aws_allows_nothing_narrower(resources):
    wildcard = {a for s in _statements(resources) if "*" in _as_list(s["Resource"]) for a in _as_list(s["Action"])}
    assert wildcard == {
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        "ec2:CreateNetworkInterface",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeSubnets",
        "ec2:DeleteNetworkInterface",
        "ec2:AssignPrivateIpAddresses",
        "ec2:UnassignPrivateIpAddresses",
    }
    logs = [s for s in _statements(resources) if any(a.startswith("logs:") for a in _as_list(s["Action"]))]
    for statement in logs:
        for resource in _as_list(statement["Resource"]):
            assert "log-group:/aws/lambda/crypto-risk-anomaly-dev" in resource["Fn::Sub"]


# --- the deployment package ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def package_entries() -> list[zipfile.ZipInfo]:
    if not PACKAGE.is_file():
        _missing(f"no deployment package at {PACKAGE.relative_to(REPO)}")
    with zipfile.ZipFile(PACKAGE) as archive:
        return archive.infolist()


def test_package_holds_the_code_and_lambda_built_requirements_only(package_entries):
    names = [entry.filename for entry in package_entries]
    assert "handler.py" in names
    assert "libs/processor.py" in names and "libs/helpers/mongodb_helper.py" in names
    # our own tests, benchmarks, events and tooling stay out
    assert not [n for n in names if n.split("/", 1)[0] in {"tests", "bench", "events", "deploy", "node_modules"}]
    # slim: no tests of the dependencies, no bytecode, no type stubs
    assert not [n for n in names if "/tests/" in n or n.endswith((".pyc", ".pyi"))]
    # compiled for the Lambda runtime: CPython 3.12, manylinux x86_64
    extensions = [n for n in names if n.endswith(".so") and n.startswith(("numpy/", "pandas/"))]
    assert extensions and all("cpython-312-x86_64-linux-gnu" in n for n in extensions)
    for top in ("numpy", "pandas", "pymongo", "aws_lambda_powertools", "aws_xray_sdk", "requests", "jmespath"):
        assert f"{top}/__init__.py" in names, top


def test_package_is_well_under_lambdas_unzipped_limit(package_entries):
    unzipped = sum(entry.file_size for entry in package_entries)
    assert unzipped < 0.8 * LAMBDA_UNZIPPED_LIMIT_BYTES


def _python312() -> str | None:
    found = subprocess.run(
        ["node", "-e", "require('./deploy/variables.js').pythonBin().then(console.log, () => process.exit(3))"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    usable = found.returncode == 0 and "no CPython 3.12 found" not in found.stderr
    return found.stdout.strip() if usable else None


def test_packaged_function_runs_on_python_312_with_nothing_but_the_package(package_entries, tmp_path):
    # given the zip unpacked as Lambda would, and a CPython 3.12 with no site-packages (-S)
    python = _python312()
    if python is None:
        _missing("no Python 3.12 interpreter to run the package with")
    with zipfile.ZipFile(PACKAGE) as archive:
        archive.extractall(tmp_path / "task")
    event = REPO / "events" / "batch-with-invalid.json"
    context_module = REPO / "libs" / "local" / "lambda_context.py"
    script = (
        "import importlib.util, json, sys\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "spec = importlib.util.spec_from_file_location('lambda_context', sys.argv[3])\n"
        "context = sys.modules['lambda_context'] = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(context)\n"
        "import handler, numpy, pandas\n"
        "assert handler.__file__.startswith(sys.argv[1]) and numpy.__file__.startswith(sys.argv[1])\n"
        "response = handler.handler(json.load(open(sys.argv[2])), context.LocalContext())\n"
        "print('RESPONSE', json.dumps(response))\n"
    )
    # and a database that refuses connections (nothing listens on port 9)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "MONGODB_URI": "mongodb://127.0.0.1:9/",
        "MONGODB_SERVER_SELECTION_TIMEOUT_MS": "300",
        "MONGODB_RSKYCLUSTER_DATABASE": "risk",
        "MONGODB_RSKYCLUSTER_COINGECKO_ONCHAIN_SCORES_COLLECTION": "scores",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    # when the handler takes the sample batch with two invalid messages
    run = subprocess.run(
        [python, "-S", "-c", script, str(tmp_path / "task"), str(event), str(context_module)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    response = json.loads(run.stdout.split("RESPONSE ", 1)[1])
    # then the two invalid ones fail validation and the valid one fails on the unreachable store
    assert failed_ids(response) == ["batch-with-invalid-0", "batch-with-invalid-1", "batch-with-invalid-2"]
    assert "batch-with-invalid-0" in run.stdout and "ServerSelectionTimeoutError" in run.stdout


# --- the framework itself: invoke local, derivation, required params -------------------------------


def test_invoke_local_runs_the_handler_on_a_sample_event(sls, ci_params):
    # given the packaging params and the embedded store
    params = _param_args({**ci_params, "MONGODB_URI": "mongomock://"})
    # when serverless invokes the function locally on the sample batch
    run = sls("invoke", "local", "-f", "anomaly", "-p", "events/batch-with-invalid.json", *params)
    # then it prints the partial batch response naming exactly the two invalid messages
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    response = json.loads(run.stdout[run.stdout.rindex("\n{\n") :])
    assert failed_ids(response) == ["batch-with-invalid-1", "batch-with-invalid-2"]


def test_visibility_follows_the_timeout_param_and_vpc_and_alarm_topic_are_optional(sls):
    # given a longer timeout, another redrive count, no VPC on purpose and no alarm topic
    run = sls(
        "print", "--format", "json", "--param=TIMEOUT=300", "--param=MAX_RECEIVE_COUNT=8", "--param=VPC_ENABLED=false"
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    config = json.loads(run.stdout[run.stdout.index("{") :])
    # then the visibility timeout is derived again, and neither a VPC nor ENI rights are granted
    assert config["provider"]["timeout"] == 300
    queue_properties = config["resources"]["Resources"]["RequestQueue"]["Properties"]
    assert queue_properties["VisibilityTimeout"] == 1800
    assert queue_properties["RedrivePolicy"]["maxReceiveCount"] == 8
    assert config["provider"].get("vpc") is None
    assert config["provider"]["iam"]["role"]["statements"] == []
    assert config["resources"]["Resources"]["DeadLetterQueueAlarm"]["Properties"]["AlarmActions"] == []
    # and the queue block keeps the shape the local pipeline reads (a --param arrives as a string)
    queue = config["custom"]["queue"]
    assert set(queue) == QUEUE_CONTRACT_KEYS
    assert int(queue["functionTimeoutSeconds"]) * int(queue["visibilityTimeoutFactor"]) == 1800


def test_a_deploy_without_vpc_params_fails_naming_them(sls):
    run = sls("print", "--param=AWS_REGION=us-east-1")
    assert run.returncode != 0
    output = run.stdout + run.stderr
    assert "SECURITY_GROUP_IDS" in output and "SUBNET_IDS" in output and "VPC_ENABLED=false" in output


def test_a_secret_given_both_plainly_and_from_ssm_is_refused(sls):
    run = sls(
        "print",
        "--param=VPC_ENABLED=false",
        "--param=MONGODB_URI=mongodb://db/",
        "--param=MONGODB_URI_SSM_PARAMETER=/crypto-risk-anomaly/mongodb-uri",
    )
    assert run.returncode != 0
    assert "either --param MONGODB_URI or --param MONGODB_URI_SSM_PARAMETER" in run.stdout + run.stderr


def test_a_secret_named_by_ssm_parameter_is_read_from_ssm_when_packaging(sls):
    # given no AWS credentials at all, and the URI named as an SSM parameter
    no_credentials = {
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
        "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_ACCESS_KEY_ID": "",
        "AWS_SECRET_ACCESS_KEY": "",
        "AWS_SESSION_TOKEN": "",
        "AWS_PROFILE": "",
    }
    # when the configuration is resolved
    run = sls(
        "print",
        "--param=VPC_ENABLED=false",
        "--param=MONGODB_URI_SSM_PARAMETER=/crypto-risk-anomaly/dev/mongodb-uri",
        env=no_credentials,
    )
    # then the framework went to SSM for it, which needs credentials at package time (docs/deploy.md, "Secrets")
    assert run.returncode != 0
    output = run.stdout + run.stderr
    assert 'Cannot resolve variable at "custom.secrets"' in output and "credentials" in output
