"""The queue pair's settings read from deploy/queue.yml (serverless.yml reads the same file), and the
handler the local pipeline finds in serverless.yml.

That the packaged template's queue pair is the one read here is checked in
tests/infrastructure/test_serverless_template.py.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import yaml

from libs.errors import ConfigError
from libs.tools.local.function import handler_path
from libs.tools.local.queue_settings import QUEUE_FILE, load_queue_settings


def write_queue_file(tmp_path, **changes):
    data = yaml.safe_load(QUEUE_FILE.read_text())
    data.update(changes)
    path = tmp_path / "queue.yml"
    path.write_text(yaml.safe_dump({k: v for k, v in data.items() if v is not None}))
    return path


def test_the_repository_file_declares_the_deployed_defaults():
    # when deploy/queue.yml is read with no stage
    settings = load_queue_settings()

    # then every value is the default a deploy without params gets, and the visibility timeout is derived
    assert settings.function_timeout_seconds == 120
    assert settings.visibility_timeout_factor == 6
    assert settings.visibility_timeout_seconds == 720
    assert settings.max_receive_count == 5
    assert settings.dlq_retention_seconds == 1_209_600
    assert settings.batch_size == 10
    assert settings.maximum_batching_window_seconds == 0
    assert settings.request_queue_name == "crypto-risk-anomaly-dev-requests"
    assert settings.dead_letter_queue_name == "crypto-risk-anomaly-dev-requests-dlq"
    assert settings.function_timeout_ms == 120_000


def test_the_stage_names_the_queues_and_a_local_option_stands_in_for_a_param():
    settings = replace(load_queue_settings(stage="prod"), function_timeout_seconds=30, max_receive_count=2)

    assert settings.request_queue_name == "crypto-risk-anomaly-prod-requests"
    assert settings.dead_letter_queue_name == "crypto-risk-anomaly-prod-requests-dlq"
    assert settings.visibility_timeout_seconds == 180
    assert settings.max_receive_count == 2


@pytest.mark.parametrize(
    "changes, key",
    [
        ({"maxReceiveCount": 0}, "maxReceiveCount"),
        ({"functionTimeoutSeconds": "two minutes"}, "functionTimeoutSeconds"),
        ({"functionTimeoutSeconds": True}, "functionTimeoutSeconds"),
        ({"batchSize": 20}, "batchSize"),
        ({"visibilityTimeoutFactor": 600}, "visibilityTimeoutFactor"),
        ({"dlqRetentionSeconds": None}, "dlqRetentionSeconds"),
        ({"requestQueueSuffix": "has spaces"}, "request_queue_name"),
        ({"service": None}, "service"),
    ],
)
def test_a_bad_or_missing_value_is_refused_naming_it(tmp_path, changes, key):
    with pytest.raises(ConfigError) as error:
        load_queue_settings(write_queue_file(tmp_path, **changes))
    assert error.value.variable == key


def test_a_local_option_is_checked_like_the_file(tmp_path):
    settings = load_queue_settings()
    with pytest.raises(ConfigError, match="functionTimeoutSeconds"):
        replace(settings, function_timeout_seconds=901)
    with pytest.raises(ConfigError, match="batchSize"):
        replace(settings, batch_size=20)
    assert replace(settings, batch_size=20, maximum_batching_window_seconds=1).batch_size == 20


def test_a_file_that_is_not_a_mapping_says_so(tmp_path):
    path = tmp_path / "queue.yml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_queue_settings(path)


def test_the_handler_is_read_from_serverless_yml_whatever_tags_surround_it(tmp_path):
    # the repository's file names the handler Lambda calls
    assert handler_path() == "handler.handler"

    # and CloudFormation's short tags elsewhere in a file do not stop it being read
    path = tmp_path / "serverless.yml"
    path.write_text(
        "service: svc\n"
        "functions:\n"
        "  f:\n"
        "    handler: pkg.module.entry\n"
        "    events:\n"
        "      - sqs: {arn: !GetAtt RequestQueue.Arn}\n"
        "resources:\n"
        "  Conditions:\n"
        '    IsProd: !Equals [!Ref "AWS::StackName", prod]\n'
    )
    assert handler_path(path) == "pkg.module.entry"


def test_a_file_with_two_functions_is_refused(tmp_path):
    path = tmp_path / "serverless.yml"
    path.write_text("functions:\n  a: {handler: a.b}\n  c: {handler: c.d}\n")
    with pytest.raises(ConfigError, match="exactly one function"):
        handler_path(path)
