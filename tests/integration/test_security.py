"""Security: no secret in any output, credentials escaped, TLS to Atlas, least-privilege IAM.

The leak test runs the service in a subprocess, configured with recognisable
secrets and a database that cannot be reached, with every library's logging
turned up to DEBUG, and scans everything the process wrote to stdout and
stderr: log lines, error messages, tracebacks, the printed response.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
import yaml
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pymongo.synchronous import srv_resolver
from pymongo.uri_parser import parse_uri

from libs.helpers import mongodb_helper
from libs.helpers.constants_helper import build_atlas_uri, load_settings
from tests.conftest import REPO
from tests.fakes.network import closed_port

USER = "svc:risk@reader/7"
PASSWORD = "Zq7/p@ss:w%rd?x#1 "
API_KEY = "dapi-SecretKey-4f9c2a7e1b"
ATLAS_HOST = "cluster0.abcde.mongodb.net"
#: Pieces distinctive enough that finding one anywhere means a secret (or part of one) leaked.
SECRET_PIECES = ("Zq7", "w%rd", "w%25rd", "risk@reader", "risk%40reader", "SecretKey", "4f9c2a7e1b")


def leak_forms(secret: str) -> set[str]:
    """Every way a secret could appear in text: raw, percent-escaped, form-escaped."""
    return {secret, secret.strip(), quote(secret, safe=""), quote_plus(secret), quote(secret)}


# --------------------------------------------------------------------------- nothing secret in any output

#: Run in the subprocess: the CLI's invoke and ensure-indexes, a settings repr, and a bare handler call.
SCRIPT = r"""
import logging, sys, traceback
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)  # pymongo's, urllib3's and everyone's lines too
from libs import cli
for argv in (["invoke", "events/batch-with-invalid.json"], ["ensure-indexes"]):
    try:
        print("exit", cli.main(argv))
    except Exception:
        traceback.print_exc()
from libs.helpers.constants_helper import get_settings
settings = get_settings()
print(repr(settings), str(settings))
"""


def _environment(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MONGODB", "ANOMALY", "QUANTILE", "POWERTOOLS"))}
    env.update(
        MONGODB_RSKYCLUSTER_DATABASE_USER_NAME=USER,
        MONGODB_RSKYCLUSTER_DATABASE_USER_PASSWORD=PASSWORD,
        MONGODB_RSKYCLUSTER_DATA_API_KEY=API_KEY,
        MONGODB_RSKYCLUSTER_DATABASE="risk",
        MONGODB_RSKYCLUSTER_COINGECKO_ONCHAIN_SCORES_COLLECTION="scores",
        MONGODB_SERVER_SELECTION_TIMEOUT_MS="300",
        MONGODB_CONNECT_TIMEOUT_MS="1000",
        POWERTOOLS_LOG_LEVEL="DEBUG",
        POWERTOOLS_TRACE_DISABLED="true",
        PYTHONUNBUFFERED="1",
    )
    env.update(overrides)
    return env


def _uri_with_credentials(port: int) -> str:
    return f"mongodb://{quote_plus(USER)}:{quote_plus(PASSWORD)}@127.0.0.1:{port}/?directConnection=true"


CONFIGURATIONS = {
    # a full MONGODB_URI holding the credentials, pointing at a closed loopback port
    "uri": lambda port: {"MONGODB_URI": _uri_with_credentials(port)},
    # host + user + password (the service builds the mongodb+srv URI); the .invalid host never resolves
    "atlas": lambda port: {"MONGODB_RSKYCLUSTER_HOST": "cluster0.leak-test.invalid"},
    # the Data API read backend with its key, reading from a closed port
    "data_api": lambda port: {
        "MONGODB_URI": _uri_with_credentials(port),
        "MONGODB_READ_BACKEND": "data_api",
        "MONGODB_DATA_API_URL": f"http://127.0.0.1:{port}/app/data-abcde/endpoint/data/v1",
        "MONGODB_RSKYCLUSTER_DATA_SOURCE": "RskyCluster",
    },
}


def _run(code: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    return result.stdout + result.stderr


def assert_no_secret(output: str, *extra: str) -> None:
    for secret in (USER, PASSWORD, API_KEY, *extra):
        for form in leak_forms(secret):
            assert form not in output, f"{form!r} leaked:\n{_around(output, form)}"
    for piece in SECRET_PIECES:
        assert piece not in output, f"{piece!r} leaked:\n{_around(output, piece)}"


def _around(output: str, needle: str) -> str:
    at = output.find(needle)
    return output[max(0, at - 300) : at + 300]


@pytest.mark.parametrize("configuration", sorted(CONFIGURATIONS))
def test_no_secret_appears_in_anything_a_failing_run_writes(configuration):
    # given the service configured with recognisable secrets and a database it cannot reach
    port = closed_port()
    env = _environment(**CONFIGURATIONS[configuration](port))

    # when it handles a batch, creates indexes and prints its settings, with DEBUG logging everywhere
    output = _run(SCRIPT, env)

    # then the run really failed against the database (so the error paths were taken) ...
    assert '"batchItemFailures"' in output and "batch-with-invalid-0" in output, output[-3000:]
    assert "message failed" in output and "message rejected" in output
    # ... and neither a secret, its escaped forms, nor the connection string appears anywhere
    assert_no_secret(output, env.get("MONGODB_URI", USER))


def test_no_secret_appears_when_the_configuration_is_refused_at_cold_start():
    # given the secrets and a malformed setting, so that importing the handler fails
    env = _environment(MONGODB_URI=_uri_with_credentials(closed_port()), ANOMALY_PERIODS="3,seven")

    # when the function starts
    output = _run("import handler", env)

    # then it stops naming the variable, and its traceback holds no secret
    assert "ANOMALY_PERIODS" in output and "ConfigError" in output
    assert_no_secret(output, env["MONGODB_URI"])


@pytest.mark.parametrize(
    "uri",
    [
        # the password pasted unescaped: its "/" ends the host list early, its "?" and "#" follow
        f"mongodb://reader:{PASSWORD}@127.0.0.1:27017/",
        # a port that is not a number, after escaped credentials
        f"mongodb://{quote_plus(USER)}:{quote_plus(PASSWORD)}@127.0.0.1:27o17/",
        # an SRV URI with a port (never valid), credentials escaped
        f"mongodb+srv://{quote_plus(USER)}:{quote_plus(PASSWORD)}@cluster0.abcde.mongodb.net:27017/",
    ],
    ids=["unescaped-password", "bad-port", "srv-with-port"],
)
def test_a_malformed_connection_string_stops_the_function_at_cold_start_naming_it_without_secrets(uri):
    # given a MONGODB_URI that the driver cannot parse, holding the credentials (contract §7: a
    # malformed required value stops the function at cold start, naming the variable)
    env = _environment(MONGODB_URI=uri)

    # when the function starts
    output = _run("import handler", env)

    # then it stops naming MONGODB_URI, instead of failing every message later, and prints no secret
    assert "ConfigError" in output and "MONGODB_URI" in output, output[-3000:]
    assert_no_secret(output, uri, "reader:")


# --------------------------------------------------------------------------- credentials escaped, TLS on


@pytest.fixture
def atlas_dns(monkeypatch):
    """Answer the SRV and TXT lookups of any mongodb+srv host as Atlas would, without DNS."""
    hosts = [(f"ac-shard-00-0{i}.abcde.mongodb.net", 27017) for i in range(3)]
    monkeypatch.setattr(srv_resolver._SrvResolver, "get_hosts", lambda self: hosts)
    monkeypatch.setattr(srv_resolver._SrvResolver, "get_hosts_and_min_ttl", lambda self: (hosts, 60))
    monkeypatch.setattr(srv_resolver._SrvResolver, "get_options", lambda self: "authSource=admin&replicaSet=atlas-1")
    return hosts


credentials = st.text(st.characters(codec="utf-8") | st.sampled_from("@:/%?#&=+ ;,[]"), min_size=1, max_size=40)


@hypothesis_settings(max_examples=300, deadline=None)
@given(user=credentials, password=credentials)
def test_any_credentials_survive_the_atlas_uri_exactly(user, password):
    # given credentials with any characters, @ : / % ? among them
    uri = build_atlas_uri(ATLAS_HOST, user, password)

    # when pymongo parses the URI the service builds (as mongodb:// here: no SRV lookup in a property test)
    parsed = parse_uri(uri.replace("mongodb+srv://", "mongodb://", 1))

    # then it reads back exactly those credentials and that host, and nothing of them leaks into the rest
    assert (parsed["username"], parsed["password"]) == (user, password)
    assert parsed["nodelist"] == [(ATLAS_HOST, 27017)]
    assert parsed["options"]["tls"] is True


@pytest.mark.parametrize(
    "password", [PASSWORD, "@", ":", "/", "%", "?", "%2F", "a@b:c/d%e?f", " leading and trailing "]
)
def test_atlas_settings_connect_with_the_exact_credentials_over_tls(password, atlas_dns):
    # given the Atlas variables with a password full of URI-reserved characters
    settings = load_settings(
        {
            "MONGODB_RSKYCLUSTER_HOST": ATLAS_HOST,
            "MONGODB_RSKYCLUSTER_DATABASE_USER_NAME": USER,
            "MONGODB_RSKYCLUSTER_DATABASE_USER_PASSWORD": password,
            "MONGODB_RSKYCLUSTER_DATABASE": "risk",
            "MONGODB_RSKYCLUSTER_COINGECKO_ONCHAIN_SCORES_COLLECTION": "scores",
        }
    )

    # when pymongo parses the srv URI (SRV and TXT answered as Atlas does) and the service builds its client
    parsed = parse_uri(settings.mongodb_uri)
    mongodb_helper.reset_client()
    try:
        client = mongodb_helper.get_client(settings)
        pool = client.options.pool_options

        # then the credentials arrive exactly, the hosts are Atlas's, and TLS is on with hostname checks
        assert (parsed["username"], parsed["password"]) == (USER, password)
        assert parsed["nodelist"] == atlas_dns and parsed["fqdn"] == ATLAS_HOST
        assert parsed["options"]["tls"] is True
        assert pool._ssl_context is not None and pool.tls_allow_invalid_hostnames is False
        credentials_ = pool._credentials
        assert (credentials_.username, credentials_.password, credentials_.source) == (USER, password, "admin")
    finally:
        mongodb_helper.reset_client()


def test_a_plain_atlas_srv_uri_gets_tls_by_default(atlas_dns):
    # given a MONGODB_URI for Atlas that does not mention TLS
    parsed = parse_uri(f"mongodb+srv://reader:secret@{ATLAS_HOST}/")

    # then the srv scheme turns TLS on
    assert parsed["options"]["tls"] is True


# --------------------------------------------------------------------------- IAM: resources named

SERVERLESS_YML = REPO / "serverless.yml"
#: Where the role's own statements are made (``roleStatements``): serverless.yml only names it.
VARIABLES_JS = REPO / "deploy" / "variables.js"
#: Actions AWS does not scope to resources: "*" is the only resource they accept (the network-interface
#: actions of a function in a VPC included: AWS's own AWSLambdaVPCAccessExecutionRole grants them on "*").
UNSCOPED_ACTIONS = {
    "xray:puttracesegments",
    "xray:puttelemetryrecords",
    "xray:getsamplingrules",
    "xray:getsamplingtargets",
    "xray:getsamplingstatisticsummaries",
    "cloudwatch:putmetricdata",
    "ec2:createnetworkinterface",
    "ec2:describenetworkinterfaces",
    "ec2:describesubnets",
    "ec2:deletenetworkinterface",
    "ec2:assignprivateipaddresses",
    "ec2:unassignprivateipaddresses",
}
#: Runs deploy/variables.js's roleStatements as osls would, with ``--param`` values from argv[2] (JSON).
ROLE_STATEMENTS_JS = r"""
const { roleStatements } = require(process.argv[1]);
const params = JSON.parse(process.argv[2]);
const resolveVariable = async (expression) => {
  const name = expression.replace(/^param:/, '').split(',')[0].trim();
  return Object.prototype.hasOwnProperty.call(params, name) ? params[name] : null;
};
roleStatements({ resolveVariable }).then(
  (statements) => process.stdout.write(JSON.stringify(statements)),
  (error) => { process.stderr.write(String(error)); process.exit(1); },
);
"""
TOPIC = "arn:aws:sns:us-east-1:123456789012:risk-alerts"
IN_A_VPC = {"SECURITY_GROUP_IDS": "sg-0123456789abcdef0", "SUBNET_IDS": "subnet-0123456789abcdef0"}


class _CloudFormationLoader(yaml.SafeLoader):
    """A YAML loader that reads CloudFormation short forms (!GetAtt, !Ref, !Sub, …) as their long forms."""


def _intrinsic(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    if tag_suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {name: value}


_CloudFormationLoader.add_multi_constructor("!", _intrinsic)


def load_serverless(text: str) -> Any:
    return yaml.load(text, Loader=_CloudFormationLoader)


def iam_statements(node: Any) -> list[dict[str, Any]]:
    """Every IAM policy statement anywhere in the document (provider.iam, roles, policies, queue policies)."""
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if "Effect" in node and ("Action" in node or "NotAction" in node):
            found.append(node)
        for value in node.values():
            found.extend(iam_statements(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(iam_statements(value))
    return found


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statement_problems(statement: dict[str, Any]) -> list[str]:
    """What is too broad about one statement; empty when it names its resources."""
    if statement.get("Effect") != "Allow":
        return []
    if "NotAction" in statement or "NotResource" in statement:
        return ["Allow with NotAction/NotResource grants everything else"]
    actions = [str(action).lower() for action in _as_list(statement.get("Action", []))]
    resources = _as_list(statement.get("Resource", []))
    problems = []
    if not resources:
        problems.append(f"{actions}: no Resource")
    if any(action in ("*", "sqs:*") for action in actions):
        problems.append(f"{actions}: wildcard action")
    touches_sqs = any(action.startswith("sqs:") for action in actions)
    for resource in resources:
        if not isinstance(resource, str):
            continue  # an intrinsic function (!GetAtt Queue.Arn, !Ref, !Sub …) names a resource
        if touches_sqs and "*" in resource:
            problems.append(f"{actions}: SQS resource {resource!r} holds a wildcard")
        elif resource == "*" and not set(actions) <= UNSCOPED_ACTIONS:
            problems.append(f"{actions}: Resource '*'")
    return problems


def broad_managed_policies(node: Any) -> list[str]:
    """Managed policies attached anywhere that grant whole services (they bypass any statement check)."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("managedPolicies", "ManagedPolicyArns"):
                found += [
                    str(arn)
                    for arn in _as_list(value)
                    if any(broad in str(arn) for broad in ("FullAccess", "AdministratorAccess", "PowerUser"))
                ]
            else:
                found += broad_managed_policies(value)
    elif isinstance(node, list):
        for value in node:
            found += broad_managed_policies(value)
    return found


def role_statements(params: dict[str, str]) -> list[dict[str, Any]]:
    """The statements deploy/variables.js makes for the role under these ``--param`` values."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed: deploy/variables.js, which makes the role's statements, cannot run")
    run = subprocess.run(
        [node, "-e", ROLE_STATEMENTS_JS, str(VARIABLES_JS), json.dumps(params)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


@pytest.mark.parametrize(
    ("params", "services"),
    [
        ({**IN_A_VPC, "ALERT_TOPIC_ARN": TOPIC}, {"ec2", "sns"}),
        (IN_A_VPC, {"ec2"}),
        ({"VPC_ENABLED": "false", "ALERT_TOPIC_ARN": TOPIC}, {"sns"}),
        ({"VPC_ENABLED": "false"}, set()),
    ],
    ids=["vpc-alerts", "vpc", "alerts", "neither"],
)
def test_the_roles_own_statements_name_their_resources(params, services):
    # given the params of a deploy, when deploy/variables.js makes the role's statements
    statements = role_statements(params)

    # then there is one per piece that needs one (the ENI rights in a VPC, sns:Publish with alerts on)
    assert {str(action).split(":")[0] for s in statements for action in _as_list(s["Action"])} == services
    # and each names its resources: the alert topic itself, "*" only for what AWS cannot scope
    assert [problem for statement in statements for problem in statement_problems(statement)] == []
    for statement in statements:
        if "sns:Publish" in _as_list(statement["Action"]):
            assert _as_list(statement["Resource"]) == [TOPIC]


def test_serverless_yml_grants_nothing_beside_the_generated_statements():
    # given the serverless.yml that is deployed
    document = load_serverless(SERVERLESS_YML.read_text())

    # then the role's statements are the ones deploy/variables.js makes (checked above, and in the packaged
    # template by tests/infrastructure), and the file itself writes no other statement or broad managed policy
    assert document["provider"]["iam"]["role"]["statements"] == "${file(./deploy/variables.js):roleStatements}"
    assert iam_statements(document) == []
    assert broad_managed_policies(document) == []


@pytest.mark.parametrize(
    ("resource", "allowed"),
    [
        ('"*"', False),
        ('"arn:aws:sqs:*:*:*"', False),
        ('"arn:aws:sqs:us-east-1:123456789012:crypto-risk-*"', False),
        ("!GetAtt RequestQueue.Arn", True),
        ('"arn:aws:sqs:${aws:region}:${aws:accountId}:crypto-risk-anomaly-requests"', True),
        ("!Sub arn:aws:sqs:${AWS::Region}:${AWS::AccountId}:requests", True),
        ("[!GetAtt RequestQueue.Arn, !GetAtt DeadLetterQueue.Arn]", True),
        ('[!GetAtt RequestQueue.Arn, "*"]', False),
    ],
)
def test_the_iam_check_fails_on_a_wildcard_sqs_resource(resource, allowed):
    # given a serverless.yml whose provider grants SQS actions on a resource
    text = f"""
provider:
  iam:
    role:
      statements:
        - Effect: Allow
          Action: [sqs:ReceiveMessage, sqs:DeleteMessage, sqs:GetQueueAttributes]
          Resource: {resource}
        - Effect: Allow
          Action: [xray:PutTraceSegments, xray:PutTelemetryRecords]
          Resource: "*"
"""
    # when it is checked / then only named queues pass (and X-Ray's unscopable "*" is fine)
    problems = [p for s in iam_statements(load_serverless(text)) for p in statement_problems(s)]
    assert (problems == []) is allowed, problems


def test_the_iam_check_finds_statements_in_cloudformation_resources_too():
    text = """
resources:
  Resources:
    Role:
      Type: AWS::IAM::Role
      Properties:
        Policies:
          - PolicyName: x
            PolicyDocument:
              Statement:
                - {Effect: Allow, Action: "sqs:*", Resource: !GetAtt RequestQueue.Arn}
                - {Effect: Allow, Action: ssm:GetParameter, Resource: "*"}
                - {Effect: Allow, NotAction: iam:*, Resource: "*"}
        ManagedPolicyArns: [arn:aws:iam::aws:policy/AmazonSQSFullAccess, arn:aws:iam::aws:policy/AWSXRayDaemonWriteAccess]
"""
    document = load_serverless(text)
    problems = [p for s in iam_statements(document) for p in statement_problems(s)]
    assert len(problems) == 3, problems
    assert broad_managed_policies(document) == ["arn:aws:iam::aws:policy/AmazonSQSFullAccess"]
