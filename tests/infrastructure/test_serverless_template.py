"""The packaged production system: serverless.yml as CloudFormation, its zip, and the framework's runs.

`make package` runs `serverless package` with the params of deploy/ci.params, then this module
against what it left in .serverless/. Without a packaged template (a plain `make test`) every test
here skips with the reason; with REQUIRE_PACKAGED_TEMPLATE=1 (set by `make package`, so CI) a
missing template or tool fails instead, so the checks cannot be skipped silently.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import zipfile
from dataclasses import replace
from datetime import datetime
from typing import Any

import pytest

from libs.tools.local.queue_settings import QueueSettings, load_queue_settings
from tests.conftest import REPO
from tests.fakes.sqs import failed_ids, sqs_event

SERVERLESS_DIR = REPO / ".serverless"
TEMPLATE = SERVERLESS_DIR / "cloudformation-template-update-stack.json"
PACKAGE = SERVERLESS_DIR / "crypto-risk-anomaly.zip"
SLS = REPO / "deploy" / "sls"
FIND_PYTHON = REPO / "deploy" / "find-python"
CI_PARAMS = REPO / "deploy" / "ci.params"
REQUIRED = os.environ.get("REQUIRE_PACKAGED_TEMPLATE") == "1"
LAMBDA_UNZIPPED_LIMIT_BYTES = 262_144_000
FUNCTION = "AnomalyLambdaFunction"
#: contract §7, written out here rather than read from the code under test.
CONTRACT_VARIABLES = {
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
    "ALERT_TOPIC_ARN",
    "ALERT_MIN_SEVERITY",
    "ALERT_ESCALATION_FACTOR",
    "ALERT_MEMORY_HOURS",
    "ALERT_MAX_PER_MESSAGE",
    "SEVERITY_RELATIVE_FLOOR",
    "SEVERITY_ABSOLUTE_FLOORS",
}
#: The params that turn alerts on and give them a route out of the VPC (deploy/ci.params sets them);
#: the second packaging leaves them out.
ALERT_PARAMS = ("ALERT_TOPIC_ARN", "CREATE_SNS_VPC_ENDPOINT", "VPC_ID")
#: Every alarm of the stack, by logical id: (namespace, metric, statistic), all to ALARM_TOPIC_ARN.
ALARMS = {
    "DeadLetterQueueAlarm": ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "Maximum"),
    "RequestQueueBacklogAlarm": ("AWS/SQS", "ApproximateAgeOfOldestMessage", "Maximum"),
    "FunctionErrorsAlarm": ("AWS/Lambda", "Errors", "Sum"),
    "FunctionThrottlesAlarm": ("AWS/Lambda", "Throttles", "Sum"),
    "FunctionDurationAlarm": ("AWS/Lambda", "Duration", "Maximum"),
}
#: Metrics AWS publishes for a queue (dimension QueueName) and a function (dimension FunctionName).
AWS_METRICS = {
    "AWS/SQS": (
        "QueueName",
        {
            "ApproximateNumberOfMessagesVisible",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
            "ApproximateAgeOfOldestMessage",
            "NumberOfMessagesSent",
            "NumberOfMessagesReceived",
            "NumberOfMessagesDeleted",
        },
    ),
    "AWS/Lambda": ("FunctionName", {"Invocations", "Errors", "Throttles", "Duration", "ConcurrentExecutions"}),
}
#: The alerts' metrics (contract §10), `service` dimension: every processed message emits them (0 with alerts off).
ALERT_METRICS = {"AlertsPublished", "AlertsWithheld"}


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


def _lambda_python(template: dict[str, Any]) -> str | None:
    """A CPython of the function's runtime version, found as the Makefile and the packaging find it."""
    version = template["Resources"][FUNCTION]["Properties"]["Runtime"].removeprefix("python")
    found = subprocess.run([str(FIND_PYTHON), version], capture_output=True, text=True, timeout=60)
    return found.stdout.strip() if found.returncode == 0 and found.stdout.strip() else None


@pytest.fixture(scope="module")
def alerts_off(sls, ci_params, tmp_path_factory) -> dict[str, Any]:
    """The template packaged a second time: alerts off, a longer timeout, a given backlog threshold
    and its own metrics namespace and service name."""
    out = tmp_path_factory.mktemp("alerts-off")
    params = {name: value for name, value in ci_params.items() if name not in ALERT_PARAMS}
    params |= {
        "TIMEOUT": "300",
        "BACKLOG_ALARM_SECONDS": "600",
        "POWERTOOLS_METRICS_NAMESPACE": "OpsCheck",
        "POWERTOOLS_SERVICE_NAME": "ops-check",
    }
    # packaging empties .serverless/ whatever --package says: keep make package's artefacts aside
    kept = out / "kept"
    shutil.copytree(SERVERLESS_DIR, kept)
    try:
        run = sls("package", "--package", str(out / "package"), *_param_args(params))
    finally:
        shutil.rmtree(SERVERLESS_DIR, ignore_errors=True)
        shutil.copytree(kept, SERVERLESS_DIR)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    return json.loads((out / "package" / TEMPLATE.name).read_text())


# --- the queue and its dead-letter queue -------------------------------------------------------


def _deployed_queue(resources: dict[str, Any]) -> dict[str, Any]:
    """What a template makes of the queue pair and its mapping, in the local settings' terms."""
    request, dlq = resources["RequestQueue"]["Properties"], resources["DeadLetterQueue"]["Properties"]
    (mapping,) = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::Lambda::EventSourceMapping"]
    return {
        "function_timeout_seconds": resources[FUNCTION]["Properties"]["Timeout"],
        "visibility_timeout_seconds": request["VisibilityTimeout"],
        "max_receive_count": request["RedrivePolicy"]["maxReceiveCount"],
        "dlq_retention_seconds": dlq["MessageRetentionPeriod"],
        "batch_size": mapping["BatchSize"],
        "maximum_batching_window_seconds": mapping["MaximumBatchingWindowInSeconds"],
        "request_queue_name": request["QueueName"],
        "dead_letter_queue_name": dlq["QueueName"],
    }


def _local_queue(settings: QueueSettings) -> dict[str, Any]:
    """The same facts as the local pipeline reads them (libs/tools/local/queue_settings.py)."""
    return {name: getattr(settings, name) for name in _DEPLOYED_NAMES}


_DEPLOYED_NAMES = (
    "function_timeout_seconds",
    "visibility_timeout_seconds",
    "max_receive_count",
    "dlq_retention_seconds",
    "batch_size",
    "maximum_batching_window_seconds",
    "request_queue_name",
    "dead_letter_queue_name",
)


def test_the_deployed_queue_pair_is_the_one_the_local_pipeline_creates(resources, alerts_off):
    # given deploy/queue.yml as the local pipeline reads it
    declared = load_queue_settings()
    # then the packaged template holds exactly that queue pair, mapping and timeout
    assert _deployed_queue(resources) == _local_queue(declared)
    # and a --param TIMEOUT=300 moves both sides alike (the visibility timeout derived again)
    assert _deployed_queue(alerts_off["Resources"]) == _local_queue(replace(declared, function_timeout_seconds=300))


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


def test_the_request_queue_backlog_alarms_after_one_redelivery_plus_five_minutes(resources, function):
    # given the default timeout (visibility 6 x 120 s) and no BACKLOG_ALARM_SECONDS
    props = resources["RequestQueueBacklogAlarm"]["Properties"]
    visibility = resources["RequestQueue"]["Properties"]["VisibilityTimeout"]
    # then the oldest request's age alarms past one retry cycle plus five minutes, held three minutes
    assert props["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["RequestQueue", "QueueName"]}}]
    assert props["Threshold"] == visibility + 300 == 6 * function["Timeout"] + 300
    assert (props["Period"], props["EvaluationPeriods"], props["DatapointsToAlarm"]) == (60, 3, 3)
    assert props["ComparisonOperator"] == "GreaterThanThreshold"


def test_function_errors_throttles_and_near_timeout_durations_alarm(resources, function):
    dimensions = [{"Name": "FunctionName", "Value": {"Ref": FUNCTION}}]
    for name in ("FunctionErrorsAlarm", "FunctionThrottlesAlarm"):
        props = resources[name]["Properties"]
        assert props["Dimensions"] == dimensions
        # one failed or throttled invocation in five minutes is enough
        assert (props["Period"], props["ComparisonOperator"], props["Threshold"]) == (300, "GreaterThanThreshold", 0)
    duration = resources["FunctionDurationAlarm"]["Properties"]
    assert duration["Dimensions"] == dimensions
    # the longest invocation past 80 % of the timeout, in milliseconds
    assert duration["Threshold"] == 0.8 * function["Timeout"] * 1000
    assert duration["ComparisonOperator"] == "GreaterThanThreshold"


def test_every_alarm_watches_its_metric_and_notifies_the_alarm_topic(resources, ci_params):
    alarms = {name for name, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    assert alarms == set(ALARMS)
    for name, (namespace, metric, statistic) in ALARMS.items():
        props = resources[name]["Properties"]
        assert (props["Namespace"], props["MetricName"], props["Statistic"]) == (namespace, metric, statistic), name
        assert props["TreatMissingData"] == "notBreaching", name  # an idle queue or function is fine
        assert props["AlarmActions"] == props["OKActions"] == [ci_params["ALARM_TOPIC_ARN"]], name
        assert props["AlarmName"].startswith("crypto-risk-anomaly-dev-"), name


def test_thresholds_follow_the_timeout_and_backlog_params(alerts_off):
    # given a package with TIMEOUT=300 and BACKLOG_ALARM_SECONDS=600
    resources = alerts_off["Resources"]
    assert resources[FUNCTION]["Properties"]["Timeout"] == 300
    # then the duration alarm moves with the timeout and the backlog alarm takes the param
    assert resources["FunctionDurationAlarm"]["Properties"]["Threshold"] == 0.8 * 300 * 1000
    assert resources["RequestQueueBacklogAlarm"]["Properties"]["Threshold"] == 600


def test_outputs_name_both_queues_urls_and_arns(template):
    outputs = template["Outputs"]
    assert outputs["RequestQueueUrl"]["Value"] == {"Ref": "RequestQueue"}
    assert outputs["RequestQueueArn"]["Value"] == {"Fn::GetAtt": ["RequestQueue", "Arn"]}
    assert outputs["DeadLetterQueueUrl"]["Value"] == {"Ref": "DeadLetterQueue"}
    assert outputs["DeadLetterQueueArn"]["Value"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}


# --- the function and its trigger ---------------------------------------------------------------


def test_function_runs_python_313_on_x86_with_tracing_and_the_defaults(function):
    assert function["Handler"] == "handler.handler"
    assert function["Runtime"] == "python3.13"
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
    # every variable of contract §7, and every one the configuration module reads
    read_by_code = set(
        re.findall(
            r'"((?:MONGODB|ANOMALY|QUANTILE|POWERTOOLS|ALERT|SEVERITY)_[A-Z0-9_]+)"',
            (REPO / "libs" / "helpers" / "constants_helper.py").read_text(),
        )
    )
    assert CONTRACT_VARIABLES <= read_by_code
    assert read_by_code - set(variables) == set()
    # the values are the params given, verbatim (a dynamic reference for the password included)
    for name in CONTRACT_VARIABLES & set(ci_params):
        assert variables[name] == ci_params[name], name
    assert variables["MONGODB_RSKYCLUSTER_DATABASE_USER_PASSWORD"].startswith("{{resolve:secretsmanager:")
    # and a variable no param names is empty: the function falls back to its own default
    assert variables["ANOMALY_PERIODS"] == ""
    assert variables["ALERT_MIN_SEVERITY"] == variables["ALERT_MAX_PER_MESSAGE"] == ""
    assert variables["SEVERITY_ABSOLUTE_FLOORS"] == variables["ALERT_MEMORY_HOURS"] == ""


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


# --- alerts (contract §10): the topic's grant, the route out of the VPC -------------------------


def _sns_statements(resources: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in _statements(resources) if any(a.lower().startswith("sns:") for a in _as_list(s["Action"]))]


def test_with_an_alert_topic_the_function_may_publish_to_that_topic_only(resources, function, ci_params):
    topic = ci_params["ALERT_TOPIC_ARN"]
    assert function["Environment"]["Variables"]["ALERT_TOPIC_ARN"] == topic
    # one statement: sns:Publish (which PublishBatch needs too) on the alert topic, nothing else
    assert [(s["Action"], _as_list(s["Resource"])) for s in _sns_statements(resources)] == [(["sns:Publish"], [topic])]


def test_with_alerts_off_there_is_no_topic_no_sns_grant_and_no_endpoint(alerts_off):
    resources = alerts_off["Resources"]
    assert resources[FUNCTION]["Properties"]["Environment"]["Variables"]["ALERT_TOPIC_ARN"] == ""
    assert _sns_statements(resources) == []
    assert not [r for r in resources.values() if r["Type"] == "AWS::EC2::VPCEndpoint"]
    # and the rest of the role is what it is with alerts on
    role_actions = {a for s in _statements(resources) for a in _as_list(s["Action"])}
    assert "sns:Publish" not in role_actions and "ec2:CreateNetworkInterface" in role_actions


def test_the_sns_endpoint_sits_in_the_functions_subnets_and_lets_through_publish_to_the_topic(
    resources, function, ci_params
):
    endpoints = [r for r in resources.values() if r["Type"] == "AWS::EC2::VPCEndpoint"]
    assert len(endpoints) == 1 and ci_params["CREATE_SNS_VPC_ENDPOINT"] == "true"
    props = endpoints[0]["Properties"]
    assert props["VpcEndpointType"] == "Interface"
    assert props["ServiceName"] == {"Fn::Sub": "com.amazonaws.${AWS::Region}.sns"}
    assert props["VpcId"] == ci_params["VPC_ID"]
    assert props["SubnetIds"] == function["VpcConfig"]["SubnetIds"]
    assert props["SecurityGroupIds"] == function["VpcConfig"]["SecurityGroupIds"]
    # private DNS: the SDK's usual regional hostname resolves to the endpoint, no endpoint URL to set
    assert props["PrivateDnsEnabled"] is True
    [statement] = props["PolicyDocument"]["Statement"]
    assert (statement["Action"], statement["Resource"]) == ("sns:Publish", ci_params["ALERT_TOPIC_ARN"])


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"ALERT_TOPIC_ARN": "my-topic"}, "ALERT_TOPIC_ARN must be an SNS topic ARN"),
        ({"CREATE_SNS_VPC_ENDPOINT": "true", "VPC_ID": "vpc-0123456789abcdef0"}, "needs --param ALERT_TOPIC_ARN"),
        ({"CREATE_SNS_VPC_ENDPOINT": "true", "ALERT_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:t"}, "VPC_ID"),
        ({"CREATE_SNS_VPC_ENDPOINT": "yes"}, "CREATE_SNS_VPC_ENDPOINT must be true or false"),
        ({"BACKLOG_ALARM_SECONDS": "soon"}, "BACKLOG_ALARM_SECONDS"),
    ],
)
def test_a_malformed_alert_or_alarm_param_fails_the_package_naming_it(sls, params, named):
    vpc = {"SECURITY_GROUP_IDS": "sg-0123456789abcdef0", "SUBNET_IDS": "subnet-0123456789abcdef0"}
    run = sls("print", *_param_args({**vpc, **params}))
    assert run.returncode != 0
    assert named in run.stdout + run.stderr


# --- the dashboard ---------------------------------------------------------------------------------


def _dashboard(template: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The dashboard's Fn::Sub text and its body parsed (the ${...} names sit inside JSON strings)."""
    dashboards = [r for r in template["Resources"].values() if r["Type"] == "AWS::CloudWatch::Dashboard"]
    assert len(dashboards) == 1
    text = dashboards[0]["Properties"]["DashboardBody"]["Fn::Sub"]
    return text, json.loads(text)


def _plotted(body: dict[str, Any]) -> list[tuple[str, str, dict[str, str]]]:
    """(namespace, metric, dimensions) of every line of every metric widget."""
    lines = []
    for widget in body["widgets"]:
        if widget["type"] != "metric":
            continue
        for entry in widget["properties"]["metrics"]:
            fields = [part for part in entry if not isinstance(part, dict)]
            namespace, name, *pairs = fields
            assert len(pairs) % 2 == 0, entry
            lines.append((namespace, name, dict(zip(pairs[::2], pairs[1::2]))))
    return lines


@pytest.fixture(scope="module")
def emitted() -> tuple[str, set[tuple[str, frozenset]]]:
    """What the function really emits: the EMF blobs of an in-process run, as (metric, dimensions) pairs.

    One batch asks for every signal on the embedded store (plus an invalid message), and one
    event is not from SQS at all (the InvalidEvents count); each metric of each blob is recorded
    with its dimension names and values.
    """
    import handler
    from libs.errors import NotAnSqsEvent
    from libs.helpers import constants_helper
    from libs.helpers.mongodb_helper import get_collection
    from libs.observability import logs_to
    from libs.tools.embedded_store import reset_embedded_store
    from libs.tools.local.lambda_context import LocalContext
    from libs.tools.synthetic import synthetic_documents

    end = datetime(2024, 11, 1)
    reset_embedded_store()
    constants_helper.reset_settings()
    documents, _ = synthetic_documents(coins=3, days=32, per_day=4, end=end, seed=5)
    get_collection().insert_many(documents)
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), logs_to(io.StringIO()):
            handler.handler(
                sqs_event({"as_of": end.isoformat(), "signals": list(constants_helper.SIGNALS)}, {"periods": 3}),
                LocalContext(),
            )
            with pytest.raises(NotAnSqsEvent):
                handler.handler({"detail-type": "Scheduled Event"}, LocalContext())
    finally:
        reset_embedded_store()
    pairs: set[tuple[str, frozenset]] = set()
    namespaces = set()
    for line in out.getvalue().splitlines():
        if not line.startswith("{") or "_aws" not in line:
            continue
        blob = json.loads(line)
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            namespaces.add(directive["Namespace"])
            for dimension_set in directive["Dimensions"]:
                dimensions = frozenset((name, blob[name]) for name in dimension_set)
                pairs |= {(metric["Name"], dimensions) for metric in directive["Metrics"]}
    assert len(namespaces) == 1
    return namespaces.pop(), pairs


def test_every_plotted_metric_is_one_the_function_emits_or_aws_publishes(template, emitted):
    namespace, pairs = emitted
    _, body = _dashboard(template)
    for plotted_namespace, name, dimensions in _plotted(body):
        if plotted_namespace in AWS_METRICS:
            dimension, names = AWS_METRICS[plotted_namespace]
            assert name in names and list(dimensions) == [dimension], (plotted_namespace, name)
        else:
            assert plotted_namespace == namespace, name
            assert (name, frozenset(dimensions.items())) in pairs, (name, dimensions)


def test_the_dashboard_shows_what_ops_look_at_first(template, emitted):
    from libs.helpers.constants_helper import SIGNALS

    namespace, _ = emitted
    _, body = _dashboard(template)
    plotted = {(ns, name, tuple(sorted(d.items()))) for ns, name, d in _plotted(body)}
    own = {(name, dims) for ns, name, dims in plotted if ns == namespace}
    names = {name for name, _ in own}
    # messages processed and failed, the stage times, the alerts' counts
    assert {"MessagesProcessed", "MessagesFailed", "ValidateMs", "LoadMs", "ModelMs", "WriteMs"} <= names
    assert ALERT_METRICS <= names
    # anomalies for every signal, each on its own line
    by_signal = {dict(dims).get("signal") for name, dims in own if name == "AnomaliesDetected"}
    assert by_signal == set(SIGNALS)
    # the request queue's depth and oldest age, the DLQ's depth
    request = (("QueueName", "${RequestQueue.QueueName}"),)
    dlq = (("QueueName", "${DeadLetterQueue.QueueName}"),)
    assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible", request) in plotted
    assert ("AWS/SQS", "ApproximateAgeOfOldestMessage", request) in plotted
    assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible", dlq) in plotted
    # the function's duration, errors, throttles and concurrency
    function = (("FunctionName", "${AnomalyLambdaFunction}"),)
    for metric in ("Duration", "Errors", "Throttles", "ConcurrentExecutions"):
        assert ("AWS/Lambda", metric, function) in plotted, metric
    # and every alarm's state on top
    [alarm_widget] = [w for w in body["widgets"] if w["type"] == "alarm"]
    assert alarm_widget["properties"]["alarms"] == [f"${{{name}.Arn}}" for name in ALARMS]


def test_the_dashboards_names_resolve_to_this_stacks_resources(template, resources):
    text, body = _dashboard(template)
    expected_types = {"Arn": "AWS::CloudWatch::Alarm", "QueueName": "AWS::SQS::Queue", None: "AWS::Lambda::Function"}
    for name in set(re.findall(r"\$\{([^}]+)\}", text)):
        if name == "AWS::Region":
            continue
        logical_id, _, attribute = name.partition(".")
        assert resources[logical_id]["Type"] == expected_types[attribute or None], name
    # every widget sits on the 24-column grid without overlapping another
    cells = set()
    for widget in body["widgets"]:
        assert 0 <= widget["x"] and widget["x"] + widget["width"] <= 24
        area = {
            (x, y)
            for x in range(widget["x"], widget["x"] + widget["width"])
            for y in range(widget["y"], widget["y"] + widget["height"])
        }
        assert not cells & area
        cells |= area


def test_the_dashboard_follows_the_metrics_namespace_and_service_params(alerts_off):
    _, body = _dashboard(alerts_off)
    own = [(ns, d) for ns, _, d in _plotted(body) if not ns.startswith("AWS/")]
    assert own and all(ns == "OpsCheck" and d["service"] == "ops-check" for ns, d in own)


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
    # compiled for the Lambda runtime: CPython 3.13, manylinux x86_64
    extensions = [n for n in names if n.endswith(".so") and n.startswith(("numpy/", "pandas/"))]
    assert extensions and all("cpython-313-x86_64-linux-gnu" in n for n in extensions)
    for top in ("numpy", "pandas", "pymongo", "aws_lambda_powertools", "aws_xray_sdk", "requests", "jmespath"):
        assert f"{top}/__init__.py" in names, top


def _service_modules() -> set[str]:
    """What the function is made of: handler.py and libs/**/*.py, less the tools (libs/cli.py, libs/tools/**)."""
    modules = {path.relative_to(REPO).as_posix() for path in (REPO / "libs").rglob("*.py")}
    return {"handler.py"} | {m for m in modules if m != "libs/cli.py" and not m.startswith("libs/tools/")}


def test_the_packages_own_files_are_the_service_exactly(package_entries):
    # given the zip's files that come from this repository (their top-level name is one of the repository's;
    # the rest are the locked requirements)
    ours = {path.name for path in REPO.iterdir()} - {".venv", "node_modules", ".serverless", ".cache"}
    names = {entry.filename for entry in package_entries if not entry.is_dir()}
    project = {name for name in names if name.split("/", 1)[0] in ours}

    # then they are exactly the handler and the service modules: no tool, test, data, doc or cache
    assert project == _service_modules()
    assert "libs/cli.py" not in project and not [n for n in project if n.startswith("libs/tools/")]
    assert not [n for n in names if n.split("/", 1)[0] in {"tests", "data", "docs", "bench", "events", "deploy"}]


def test_package_is_well_under_lambdas_unzipped_limit(package_entries):
    unzipped = sum(entry.file_size for entry in package_entries)
    assert unzipped < 0.8 * LAMBDA_UNZIPPED_LIMIT_BYTES


def test_packaged_function_runs_on_the_runtime_python_with_nothing_but_the_package(package_entries, template, tmp_path):
    # given the zip unpacked as Lambda would, and a CPython of the runtime's version with no site-packages (-S)
    python = _lambda_python(template)
    if python is None:
        _missing(
            f"no Python {template['Resources'][FUNCTION]['Properties']['Runtime']} interpreter to run the package with"
        )
    with zipfile.ZipFile(PACKAGE) as archive:
        archive.extractall(tmp_path / "task")
    event = REPO / "events" / "batch-with-invalid.json"
    context_module = REPO / "libs" / "tools" / "local" / "lambda_context.py"
    script = (
        "import importlib.util, json, sys\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "spec = importlib.util.spec_from_file_location('lambda_context', sys.argv[3])\n"
        "context = sys.modules['lambda_context'] = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(context)\n"
        "import handler, numpy, pandas\n"
        "assert handler.__file__.startswith(sys.argv[1]) and numpy.__file__.startswith(sys.argv[1])\n"
        "print('PYTHON', '%d.%d' % sys.version_info[:2])\n"
        "import botocore, pymongo, requests, urllib3\n"
        "versions = {m.__name__: m.__version__ for m in (numpy, pandas, pymongo, botocore, requests, urllib3)}\n"
        "print('VERSIONS', json.dumps(versions))\n"
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
    # and it ran on the runtime's version, with the versions of the function's lock (requirements.txt)
    locked = dict(re.findall(r"^([a-z0-9._-]+)==([^ ;\\]+)", (REPO / "requirements.txt").read_text(), re.M))
    versions = json.loads(run.stdout.split("VERSIONS ", 1)[1].splitlines()[0])
    assert versions == {name: locked[name] for name in versions}
    assert f"PYTHON {template['Resources'][FUNCTION]['Properties']['Runtime'].removeprefix('python')}" in run.stdout


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
    # and the queue block is deploy/queue.yml's with the two params in place (a --param arrives as a string)
    queue = config["custom"]["queue"]
    local = replace(load_queue_settings(), function_timeout_seconds=300, max_receive_count=8)
    assert int(queue["functionTimeoutSeconds"]) * int(queue["visibilityTimeoutFactor"]) == 1800
    assert local.visibility_timeout_seconds == 1800 and int(queue["maxReceiveCount"]) == local.max_receive_count


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
