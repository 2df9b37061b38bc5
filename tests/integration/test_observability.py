"""Observability as ops meet it: X-Ray over UDP, JSON log lines, EMF metrics, no secrets anywhere.

The Lambda runs tests invoke the handler in a process of their own
(``tests/fakes/lambda_invoke.py``) with the variables the Lambda runtime sets,
so the X-Ray SDK builds its facade segment and streams subsegments to a UDP
socket on 127.0.0.1 (``tests/fakes/xray_daemon.py``). MongoDB is reached over
its real wire protocol on loopback (``libs/tools/loopback/wire_mongo.py``, answering
from mongomock), so pymongo's command monitoring, which aws-xray-sdk's
pymongo patch listens to, fires on real commands. Expected values come from
what the server received and what ended up in the store, not from the code
under test.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from libs.tools.embedded_store import embedded_client, reset_embedded_store
from libs.tools.local.lambda_context import LocalContext
from libs.tools.loopback.wire_mongo import ReceivedCommand, WireMongoServer
from libs.tools.synthetic import synthetic_documents
from tests.conftest import REPO
from tests.fakes.lambda_invoke import split_output
from tests.fakes.sqs import sqs_record
from tests.fakes.xray_daemon import XRayDaemon, children, descendants

END = datetime(2024, 11, 1)
DATABASE, COLLECTION = "risk", "scores"
NAMESPACE = "OpsTestNamespace"
FUNCTION = "crypto-risk-anomaly-ops"
TRACES = [
    ("1-5759e988-bd862e3fe1be46a994272793", "53995c3f42cd8ad8"),
    ("1-5759e989-0123456789abcdef01234567", "6a1b2c3d4e5f6071"),
]
LAMBDA_REQUEST_IDS = ["aaaaaaaa-0000-4000-8000-000000000001", "aaaaaaaa-0000-4000-8000-000000000002"]

LATEST = {
    "request_id": "ops-latest",
    "as_of": END.isoformat(),
    "coin_ids": ["coin-0000", "coin-0001", "ghost-coin"],
    "signals": ["latest_price", "volume"],
}
RANGE = {
    "request_id": "ops-range",
    "since": (END - timedelta(days=12)).isoformat(),
    "as_of": END.isoformat(),
    "coin_ids": ["coin-0002", "coin-0003", "coin-0004"],
    "signals": ["market_cap_score", "volume"],
    "periods": [3, 7],
}
INVALID = {"request_id": "ops-invalid", "periods": [1.5]}
WARM = {
    "request_id": "ops-warm",
    "as_of": END.isoformat(),
    "coin_ids": ["coin-0000"],
    "signals": ["volatility_index"],
    "periods": [7],
}


def _lambda_env(**overrides: str) -> dict[str, str]:
    """The machine's environment less our configuration, plus what the Lambda runtime sets."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("MONGODB", "ANOMALY", "QUANTILE", "POWERTOOLS", "AWS_XRAY", "_X_AMZN"))
    }
    env.update(
        LAMBDA_TASK_ROOT=str(REPO),
        AWS_LAMBDA_FUNCTION_NAME=FUNCTION,
        AWS_REGION="us-east-1",
        AWS_DEFAULT_REGION="us-east-1",
        PYTHONPATH=str(REPO),
    )
    env.update(overrides)
    return env


def _invocations(*batches: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "trace_header": f"Root={root};Parent={parent};Sampled=1",
            "request_id": request_id,
            "event": {"Records": batch},
        }
        for batch, (root, parent), request_id in zip(batches, TRACES, LAMBDA_REQUEST_IDS)
    ]


@dataclass
class Run:
    """Everything one Lambda process run left behind."""

    returncode: int
    stdout: str
    stderr: str
    datagrams: list[bytes]
    entities: list[dict[str, Any]]
    commands: list[ReceivedCommand]
    documents: list[dict[str, Any]]
    port: int

    def __post_init__(self) -> None:
        self.per_invocation, self.markers, self.after = split_output(self.stdout)

    def responses(self) -> list[dict[str, Any]]:
        return [marker["response"] for marker in self.markers if "invocation" in marker]

    def lines(self, invocation: int) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.per_invocation[invocation]]

    def log_lines(self, invocation: int) -> list[dict[str, Any]]:
        return [line for line in self.lines(invocation) if "_aws" not in line]

    def emf(self, invocation: int) -> list[dict[str, Any]]:
        return [line for line in self.lines(invocation) if "_aws" in line]


def _run_process(
    tmp_path: Path, invocations: list[dict[str, Any]], env: dict[str, str]
) -> tuple[subprocess.CompletedProcess, list[bytes], list[dict[str, Any]]]:
    """The invocations in a Lambda-like process whose X-Ray daemon is a UDP socket of ours."""
    spec = tmp_path / "invocations.json"
    spec.write_text(json.dumps(invocations))
    with XRayDaemon() as daemon:
        result = subprocess.run(
            [sys.executable, "-m", "tests.fakes.lambda_invoke", str(spec)],
            cwd=REPO,
            env=_lambda_env(POWERTOOLS_METRICS_NAMESPACE=NAMESPACE, AWS_XRAY_DAEMON_ADDRESS=daemon.address, **env),
            capture_output=True,
            text=True,
            timeout=240,
        )
    return result, daemon.datagrams, daemon.entities()


def run_lambda(
    tmp_path: Path, invocations: list[dict[str, Any]], documents: list[dict[str, Any]], userinfo: str = "", **env: str
) -> Run:
    """Seed a loopback MongoDB, run the invocations in a Lambda-like process, and collect every output.

    ``userinfo`` (``user:password``) goes into the connection string; the server refuses every credential.
    """
    reset_embedded_store()
    client = embedded_client()
    if documents:
        client[DATABASE][COLLECTION].insert_many(documents)
    try:
        with WireMongoServer(client) as server:
            uri = server.uri.replace("//", f"//{userinfo}@") if userinfo else server.uri
            store = {
                "MONGODB_URI": uri,
                "MONGODB_RSKYCLUSTER_DATABASE": DATABASE,
                "MONGODB_RSKYCLUSTER_COINGECKO_ONCHAIN_SCORES_COLLECTION": COLLECTION,
            }
            result, datagrams, entities = _run_process(tmp_path, invocations, {**store, **env})
        return Run(
            result.returncode,
            result.stdout,
            result.stderr,
            datagrams,
            entities,
            server.commands,
            list(client[DATABASE][COLLECTION].find({})),
            server.port,
        )
    finally:
        reset_embedded_store()


@pytest.fixture(scope="module")
def ops_run(tmp_path_factory) -> Run:
    """A cold invocation (latest, backfill, invalid) and a warm one, traced, logged and measured."""
    documents, _ = synthetic_documents(coins=5, days=12, per_day=36, end=END, seed=11)
    cold = [sqs_record(LATEST, "msg-0"), sqs_record(RANGE, "msg-1"), sqs_record(INVALID, "msg-2")]
    warm = [sqs_record(WARM, "msg-3")]
    run = run_lambda(tmp_path_factory.mktemp("ops"), _invocations(cold, warm), documents)
    assert run.returncode == 0, run.stderr
    return run


# -- what the store and the server say happened (the independent side) ------


def _judged(run: Run, coins: list[str], signal: str | None = None) -> list[dict[str, Any]]:
    return [
        d
        for d in run.documents
        if d["coin_id"] in coins and "anomalies" in d and (signal is None or signal in d["anomalies"])
    ]


def _flags(run: Run, coins: list[str], signal: str) -> int:
    return sum(
        bool(entry["is_anomaly"]) for d in _judged(run, coins, signal) for entry in d["anomalies"][signal].values()
    )


def _latest_coins() -> list[str]:
    return LATEST["coin_ids"][:2]


def _range_coins() -> list[str]:
    return RANGE["coin_ids"]


def _served(run: Run) -> list[ReceivedCommand]:
    """The server's find and update commands, in order: latest, backfill, then the warm message."""
    return [command for command in run.commands if command.name in ("find", "update")]


def _by_message(run: Run) -> list[list[ReceivedCommand]]:
    groups: list[list[ReceivedCommand]] = []
    for command in _served(run):
        if command.name == "find":
            groups.append([])
        groups[-1].append(command)
    return groups


# -- X-Ray ------------------------------------------------------------------


def _one(entities: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(entities) == 1, [e["name"] for e in entities]
    return entities[0]


def _handler_segment(run: Run, invocation: int) -> dict[str, Any]:
    root, parent = TRACES[invocation]
    return _one(
        [e for e in run.entities if e["name"] == "## handler" and e["trace_id"] == root and e["parent_id"] == parent]
    )


def test_every_stage_of_every_message_is_a_subsegment_under_the_lambda_facade(ops_run):
    # given the cold invocation's trace, as the daemon received it
    handler_segment = _handler_segment(ops_run, 0)
    messages = children(ops_run.entities, handler_segment, "## message")

    # then each message has its own subsegment, and each stage nests under it in order
    assert [m["annotations"]["message_id"] for m in messages] == ["msg-0", "msg-1", "msg-2"]
    for message in messages[:2]:
        assert [c["name"] for c in children(ops_run.entities, message)] == [
            "## validate",
            "## load",
            "## model",
            "## write",
        ]
        assert not message.get("fault") and not message.get("error")
    # and every entity of the trace was sent with the trace id and is closed
    assert all(
        e["trace_id"] == TRACES[0][0] and not e["in_progress"]
        for e in [handler_segment, *descendants(ops_run.entities, handler_segment)]
    )


def test_subsegments_carry_the_annotations_ops_filter_on(ops_run):
    messages = children(ops_run.entities, _handler_segment(ops_run, 0), "## message")
    for message, request, coins in ((messages[0], LATEST, _latest_coins()), (messages[1], RANGE, _range_coins())):
        judged = _judged(ops_run, coins)
        anomalies = {signal: _flags(ops_run, coins, signal) for signal in request["signals"]}
        mode = "range" if "since" in request else "latest"

        # the message: who it is, what it judged, what it found
        assert message["annotations"] == {
            "message_id": message["annotations"]["message_id"],
            "request_id": request["request_id"],
            "mode": mode,
            "coins": len({d["coin_id"] for d in judged}),
            "observations": len(judged),
            "anomalies": sum(anomalies.values()),
        }
        # every stage can be found by request_id and mode
        for stage in children(ops_run.entities, message):
            assert stage["annotations"]["request_id"] == request["request_id"]
            assert stage["annotations"]["mode"] == mode
        # one subsegment per requested signal inside the model stage
        model = _one(children(ops_run.entities, message, "## model"))
        per_signal = children(ops_run.entities, model)
        assert sorted(s["name"] for s in per_signal) == sorted(f"## {signal}" for signal in request["signals"])
        for segment in per_signal:
            signal = segment["annotations"]["signal"]
            assert segment["name"] == f"## {signal}"
            assert segment["annotations"] == {
                "request_id": request["request_id"],
                "mode": mode,
                "signal": signal,
                "observations": len(_judged(ops_run, coins, signal)),
                "anomalies": anomalies[signal],
            }


def test_the_request_is_metadata_on_the_message_subsegment(ops_run):
    message = children(ops_run.entities, _handler_segment(ops_run, 0), "## message")[1]
    request = message["metadata"]["crypto-risk-anomaly"]["request"]
    assert request["request_id"] == "ops-range" and request["mode"] == "range"
    assert request["signals"] == ["market_cap_score", "volume"] and request["periods_days"] == [3, 7]
    assert request["since"] == RANGE["since"] and request["coins"] == 3


def test_every_mongodb_command_is_a_subsegment_of_the_stage_that_sent_it(ops_run):
    # given what the server received, message by message
    served = _by_message(ops_run)
    traced_messages = [
        *children(ops_run.entities, _handler_segment(ops_run, 0), "## message")[:2],
        *children(ops_run.entities, _handler_segment(ops_run, 1), "## message"),
    ]
    assert len(served) == len(traced_messages) == 3
    for position, (message, commands) in enumerate(zip(traced_messages, served)):
        load = _one(children(ops_run.entities, message, "## load"))
        write = _one(children(ops_run.entities, message, "## write"))
        finds = children(ops_run.entities, load)
        updates = children(ops_run.entities, write)
        # then the load stage holds exactly the one find, the write stage one update per bulk batch; on the
        # container's first message a ping may come first (a client whose monitor has not yet found the server
        # checks for one within the selection timeout rather than the whole budget: mongodb_helper.await_server)
        assert [c.name for c in commands] == ["find"] + ["update"] * len(updates)
        names = [s["annotations"]["mongodb_command_name"] for s in finds]
        assert names == ["find"] or (position == 0 and names == ["ping", "find"]), (position, names)
        assert len(updates) == math.ceil(sum(c.documents for c in commands[1:]) / 1000)
        for command in finds + updates:
            assert command["name"] == f"{DATABASE}@127.0.0.1:{ops_run.port}"
            assert command["namespace"] == "remote"
            assert command["annotations"]["mongodb_database_name"] == DATABASE
    # and the backfill's 1,296 judged documents went out as two bulk writes
    assert [c.documents for c in served[1]] == [1296, 1000, 296]


def test_a_rejected_request_is_an_error_not_a_fault(ops_run):
    invalid = children(ops_run.entities, _handler_segment(ops_run, 0), "## message")[2]
    assert invalid["annotations"] == {"message_id": "msg-2"}
    assert invalid["error"] is True and not invalid.get("fault")
    validate = _one(children(ops_run.entities, invalid))
    assert validate["name"] == "## validate" and validate["error"] is True and not validate.get("fault")
    exception = validate["cause"]["exceptions"][0]
    assert exception["type"] == "InvalidRequest" and "periods" in exception["message"]


def test_the_warm_invocation_is_its_own_trace_without_cold_start(ops_run):
    cold, warm = _handler_segment(ops_run, 0), _handler_segment(ops_run, 1)
    assert cold["annotations"]["ColdStart"] is True and warm["annotations"]["ColdStart"] is False
    message = _one(children(ops_run.entities, warm, "## message"))
    assert message["annotations"]["request_id"] == "ops-warm"


def test_requests_is_not_imported_with_the_driver_backend(ops_run):
    assert ops_run.markers[-1] == {"modules": []}


# -- logs -------------------------------------------------------------------


def test_every_log_line_is_json_with_the_lambda_request_id_and_the_message(ops_run):
    for invocation, request_id in enumerate(LAMBDA_REQUEST_IDS):
        lines = ops_run.log_lines(invocation)
        assert lines
        for line in lines:
            assert line["function_request_id"] == request_id
            assert line["xray_trace_id"] == TRACES[invocation][0]
            assert line["message_id"].startswith("msg-")  # every line here is about a message
    by_message = {line["message_id"]: line for line in ops_run.log_lines(0)}
    assert by_message["msg-0"]["request_id"] == "ops-latest" and by_message["msg-1"]["request_id"] == "ops-range"


def test_one_summary_line_per_processed_message_says_what_it_did(ops_run):
    summaries = [line for line in ops_run.log_lines(0) if line["message"] == "message processed"]
    assert [s["message_id"] for s in summaries] == ["msg-0", "msg-1"]
    served = _by_message(ops_run)
    for summary, request, coins, commands in (
        (summaries[0], LATEST, _latest_coins(), served[0]),
        (summaries[1], RANGE, _range_coins(), served[1]),
    ):
        judged = _judged(ops_run, coins)
        assert summary["level"] == "INFO"
        assert summary["mode"] == ("range" if "since" in request else "latest")
        assert summary["coins_judged"] == len({d["coin_id"] for d in judged})
        assert summary["observations_judged"] == len(judged)
        assert summary["documents_read"] == commands[0].documents
        assert summary["documents_written"] == sum(c.documents for c in commands[1:])
        assert summary["documents_skipped"] == 0
        expected = {}
        for signal in request["signals"]:
            for d in _judged(ops_run, coins, signal):
                for period, entry in d["anomalies"][signal].items():
                    if entry["is_anomaly"]:
                        expected[f"{signal}.{period}"] = expected.get(f"{signal}.{period}", 0) + 1
        assert summary["anomalies"] == expected
        assert summary["anomalies_by_signal"] == {s: _flags(ops_run, coins, s) for s in request["signals"]}
        assert set(summary["stage_ms"]) == {"validate", "load", "model", "write"}
        assert set(summary["signal_ms"]) == set(request["signals"])
        assert all(ms >= 0 for ms in [*summary["stage_ms"].values(), *summary["signal_ms"].values()])
    assert summaries[0]["stale_coins"] == 1 and summaries[0]["stale_coin_ids"] == ["ghost-coin"]


def test_every_failure_is_logged_with_its_reason(ops_run):
    failures = [line for line in ops_run.log_lines(0) if line["level"] == "ERROR"]
    assert len(failures) == 1
    assert failures[0]["message_id"] == "msg-2" and failures[0]["failure"] == "invalid"
    assert failures[0]["key"] == "periods" and "JSON integer" in failures[0]["reason"]
    assert ops_run.responses()[0] == {"batchItemFailures": [{"itemIdentifier": "msg-2"}]}


# -- metrics ----------------------------------------------------------------


def _blob(emf: list[dict[str, Any]], dimensions: list[str], **values: str) -> dict[str, Any]:
    return _one(
        [
            b
            for b in emf
            if sorted(b["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0]) == sorted(dimensions)
            and all(b.get(k) == v for k, v in values.items())
        ]
    )


def test_metrics_are_emf_in_the_configured_namespace(ops_run):
    for invocation in (0, 1):
        for blob in ops_run.emf(invocation):
            directive = blob["_aws"]["CloudWatchMetrics"][0]
            assert directive["Namespace"] == NAMESPACE
            for metric in directive["Metrics"]:
                assert metric["Name"] in blob  # every declared metric has its values
            assert blob["service"] == "crypto-risk-anomaly"


def test_message_metrics_match_what_the_run_did(ops_run):
    # given what the server and the store saw for the two processed messages of the cold invocation
    served = _by_message(ops_run)[:2]
    judged = [_judged(ops_run, _latest_coins()), _judged(ops_run, _range_coins())]
    flags = [
        sum(_flags(ops_run, _latest_coins(), s) for s in LATEST["signals"]),
        sum(_flags(ops_run, _range_coins(), s) for s in RANGE["signals"]),
    ]

    blob = _blob(ops_run.emf(0), ["service"])

    assert blob["MessagesProcessed"] == [2.0] and blob["MessagesFailed"] == [1.0]
    assert blob["ObservationsJudged"] == [float(len(j)) for j in judged]
    assert blob["DocumentsRead"] == [float(c[0].documents) for c in served]
    assert blob["DocumentsWritten"] == [float(sum(u.documents for u in c[1:])) for c in served]
    assert blob["DocumentsSkipped"] == [0.0, 0.0]
    assert blob["AnomaliesDetected"] == [float(f) for f in flags]
    units = {m["Name"]: m["Unit"] for m in blob["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    for stage in ("ValidateMs", "LoadMs", "ModelMs", "WriteMs"):
        assert units[stage] == "Milliseconds" and len(blob[stage]) == 2 and min(blob[stage]) >= 0


def test_anomalies_and_time_by_signal_are_metrics_with_a_signal_dimension(ops_run):
    emf = ops_run.emf(0)
    requested = {
        "latest_price": [_latest_coins()],
        "volume": [_latest_coins(), _range_coins()],
        "market_cap_score": [_range_coins()],
    }
    for signal, coin_sets in requested.items():
        blob = _blob(emf, ["service", "signal"], signal=signal)
        assert blob["AnomaliesDetected"] == [float(_flags(ops_run, coins, signal)) for coins in coin_sets]
        assert blob["ObservationsJudged"] == [float(len(_judged(ops_run, coins, signal))) for coins in coin_sets]
        assert len(blob["ModelMs"]) == len(coin_sets)
    assert len([b for b in emf if "signal" in b]) == len(requested)


def test_cold_start_is_counted_once_per_container(ops_run):
    cold = _blob(ops_run.emf(0), ["function_name", "service"])
    assert cold["ColdStart"] == [1.0] and cold["function_name"] == LocalContext().function_name
    assert not [b for b in ops_run.emf(1) if "ColdStart" in b]
    assert _blob(ops_run.emf(1), ["service"])["MessagesProcessed"] == [1.0]


# -- secrets ----------------------------------------------------------------

PASSWORD = "Pw-0bserv@bility!Zq9"
DATA_API_KEY = "dak-7Hq2XbW9LmN4pR8sT1vY6zC3"


@pytest.mark.parametrize("backend", ["driver", "data_api"])
def test_no_secret_appears_in_any_output_of_a_failing_run(tmp_path, backend):
    # given a configuration holding a password and a Data API key, debug logging and event logging on,
    # and a store that refuses the credentials (driver) or a Data API that is not there (data_api)
    secrets = [PASSWORD, quote_plus(PASSWORD), quote(PASSWORD, safe=""), DATA_API_KEY]
    env = {
        "MONGODB_RSKYCLUSTER_HOST": "cluster0.example.mongodb.net",
        "MONGODB_RSKYCLUSTER_DATABASE_USER_NAME": "ops-user",
        "MONGODB_RSKYCLUSTER_DATABASE_USER_PASSWORD": PASSWORD,
        "MONGODB_READ_BACKEND": backend,
        "MONGODB_RSKYCLUSTER_DATA_API_KEY": DATA_API_KEY,
        "MONGODB_RSKYCLUSTER_DATA_SOURCE": "Cluster0",
        "MONGODB_DATA_API_URL": "http://127.0.0.1:9/app/data-abc/endpoint/data/v1",
        "MONGODB_SERVER_SELECTION_TIMEOUT_MS": "2000",
        "POWERTOOLS_LOG_LEVEL": "DEBUG",
        "POWERTOOLS_LOGGER_LOG_EVENT": "true",
    }
    documents, _ = synthetic_documents(coins=2, days=2, per_day=4, end=END, seed=2)
    batch = [sqs_record({"as_of": END.isoformat()}, "msg-0"), sqs_record({"periods": [0]}, "msg-1")]

    # when the function runs with the password in its connection string too
    run = run_lambda(tmp_path, _invocations(batch), documents, userinfo=f"ops-user:{quote_plus(PASSWORD)}", **env)

    # then both messages failed, each with a logged reason ...
    assert run.returncode == 0, run.stderr
    assert run.responses() == [{"batchItemFailures": [{"itemIdentifier": "msg-0"}, {"itemIdentifier": "msg-1"}]}]
    failures = {line["message_id"]: line for line in run.log_lines(0) if line.get("level") == "ERROR"}
    assert failures["msg-0"]["failure"] == "store" and failures["msg-0"]["reason"]
    assert failures["msg-1"]["failure"] == "invalid"
    # ... and no secret, nor any 8 characters of one, appears in stdout, stderr or the trace sent to X-Ray
    everything = run.stdout + run.stderr + b"".join(run.datagrams).decode("utf-8", "replace")
    for secret in secrets:
        pieces = {secret[i : i + 8] for i in range(len(secret) - 7)}
        assert not [piece for piece in pieces if piece in everything], secret


# -- outside Lambda ---------------------------------------------------------


def test_outside_lambda_the_tracer_is_quiet():
    # given a normal local run: no Lambda variables, tracing not switched off by hand
    env = {
        name: value
        for name, value in _lambda_env(MONGODB_URI="mongomock://").items()
        if name not in ("LAMBDA_TASK_ROOT", "AWS_LAMBDA_FUNCTION_NAME")
    }

    # when an event goes through the handler
    result = subprocess.run(
        [sys.executable, "-m", "libs.cli", "invoke", "events/batch-with-invalid.json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    # then it answers, and nothing complains about missing segments or anything else
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert "segment" not in output.lower() and "traceback" not in output.lower()
    # stderr holds only the function's own JSON log and metric lines (invoke keeps stdout for the answer)
    assert all(json.loads(line) for line in result.stderr.splitlines())
    assert json.loads(result.stdout)["batchItemFailures"]


# -- in-process: log correlation and its clean-up ---------------------------


def test_log_lines_about_a_message_carry_its_ids_and_nothing_leaks_to_the_next(
    store, lambda_context, json_logs, monkeypatch
):
    import handler
    from libs.helpers import mongodb_helper
    from libs.observability import logger

    # given a store that fails the first read, then works
    documents, _ = synthetic_documents(coins=2, days=3, per_day=4, end=END, seed=4)
    store.insert_many(documents)
    real_find = mongodb_helper.DriverReader.find
    calls = []

    def failing_once(self, query, projection):
        calls.append(query)
        if len(calls) == 1:
            raise mongodb_helper.StoreUnavailable("reading history failed: AutoReconnect: reset")
        return real_find(self, query, projection)

    monkeypatch.setattr(mongodb_helper.DriverReader, "find", failing_once)
    event = {
        "Records": [
            sqs_record({"as_of": END.isoformat(), "request_id": "first"}, "m-1"),
            sqs_record({"as_of": END.isoformat()}, "m-2"),
            sqs_record("not json", "m-3"),
        ]
    }

    # when
    response = handler.handler(event, lambda_context)

    # then the failure line carries the request_id it had reached, the next message its own ids only
    assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == ["m-1", "m-3"]
    lines = json_logs.lines()
    assert [(line["message_id"], line.get("request_id"), line["message"]) for line in lines] == [
        ("m-1", "first", "message failed"),
        ("m-2", "m-2", "message processed"),
        ("m-3", None, "message rejected"),
    ]
    assert all(line["function_request_id"] == lambda_context.aws_request_id for line in lines)
    assert lines[0]["failure"] == "store" and "AutoReconnect" in lines[0]["reason"]
    assert not set(logger.get_current_keys()) & {"message_id", "request_id"}


def test_traced_passes_exceptions_through_when_tracing_is_off():
    from libs.errors import InvalidRequest
    from libs.observability import annotate, traced

    with pytest.raises(InvalidRequest):
        with traced("## anything") as subsegment:
            annotate(subsegment, request_id="r", observations=3)
            raise InvalidRequest("periods", "must be a list")


# -- a real server, when there is one -----------------------------------------


@pytest.mark.mongodb
@pytest.mark.skipif(not os.environ.get("MONGODB_TEST_URI"), reason="needs a real server: set MONGODB_TEST_URI")
def test_on_a_real_server_every_command_is_a_subsegment(tmp_path):
    from pymongo import MongoClient

    # given a real server holding a few coins
    client = MongoClient(os.environ["MONGODB_TEST_URI"], serverSelectionTimeoutMS=5000)
    database = "crypto_risk_anomaly_xray_test"
    client.drop_database(database)
    documents, _ = synthetic_documents(coins=3, days=3, per_day=4, end=END, seed=6)
    client[database][COLLECTION].insert_many(documents)
    try:
        # when a message is processed in a Lambda-like process against it
        env = {
            "MONGODB_URI": os.environ["MONGODB_TEST_URI"],
            "MONGODB_RSKYCLUSTER_DATABASE": database,
            "MONGODB_RSKYCLUSTER_COINGECKO_ONCHAIN_SCORES_COLLECTION": COLLECTION,
        }
        result, _, entities = _run_process(
            tmp_path, _invocations([sqs_record({"as_of": END.isoformat()}, "msg-0")]), env
        )
        assert result.returncode == 0, result.stderr

        # then the find sits under ## load and the update under ## write, named after the database
        root, parent = TRACES[0]
        handler_segment = _one([e for e in entities if e["name"] == "## handler" and e["parent_id"] == parent])
        message = _one(children(entities, handler_segment, "## message"))
        load = _one(children(entities, message, "## load"))
        write = _one(children(entities, message, "## write"))
        assert [s["annotations"]["mongodb_command_name"] for s in children(entities, load)] == ["find"]
        assert [s["annotations"]["mongodb_command_name"] for s in children(entities, write)] == ["update"]
        assert all(s["name"].startswith(f"{database}@") for s in children(entities, load) + children(entities, write))
    finally:
        client.drop_database(database)
        client.close()


def test_powertools_service_name_names_the_service_in_logs_traces_and_metrics(tmp_path):
    # given: the function deployed with POWERTOOLS_SERVICE_NAME=some-name
    documents, _ = synthetic_documents(coins=3, days=6, per_day=12, end=END, seed=5)
    cold = [sqs_record(LATEST, "msg-0"), sqs_record(INVALID, "msg-1")]
    # when: one invocation runs in a Lambda-like process
    run = run_lambda(tmp_path, _invocations(cold), documents, POWERTOOLS_SERVICE_NAME="some-name")
    assert run.returncode == 0, run.stderr
    # then: every log line, the handler segment and every EMF blob (per-signal ones too) carry it
    lines = run.log_lines(0)
    assert lines and {line["service"] for line in lines} == {"some-name"}
    assert _handler_segment(run, 0)["annotations"]["Service"] == "some-name"
    message = [e for e in run.entities if e["name"] == "## message"]
    assert message and all("some-name" in e.get("metadata", {}) for e in message if "request" in str(e))
    blobs = run.emf(0)
    assert any("signal" in blob for blob in blobs)
    assert blobs and {blob["service"] for blob in blobs} == {"some-name"}
