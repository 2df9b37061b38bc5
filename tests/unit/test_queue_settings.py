"""Reading custom.queue from serverless.yml (the contract shared with the deployment)."""

from __future__ import annotations

import textwrap

import pytest

from libs.errors import ConfigError
from libs.tools.local.queue_settings import CloudFormationTag, load_queue_settings, read_serverless

QUEUE_BLOCK = """
custom:
  queue:
    functionTimeoutSeconds: ${param:TIMEOUT, 120}
    visibilityTimeoutFactor: 6
    maxReceiveCount: ${param:MAX_RECEIVE_COUNT, 5}
    dlqRetentionSeconds: 1209600
    batchSize: ${param:BATCH_SIZE, 10}
    maximumBatchingWindowSeconds: ${param:MAXIMUM_BATCHING_WINDOW, 0}
    requestQueueName: ${self:service}-${sls:stage}-requests
    deadLetterQueueName: ${self:service}-${sls:stage}-requests-dlq
"""


def write_serverless(tmp_path, text: str):
    path = tmp_path / "serverless.yml"
    path.write_text(textwrap.dedent(text))
    return path


def test_the_repository_file_declares_the_contract_values():
    # when the repository's serverless.yml is read with no params and no stage
    settings = load_queue_settings()

    # then every value is the contract's default, and the visibility timeout is derived as factor x timeout
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


def test_params_and_stage_passed_in_win_over_the_defaults():
    settings = load_queue_settings(stage="prod", params={"TIMEOUT": "30", "MAX_RECEIVE_COUNT": "2"})

    assert settings.function_timeout_seconds == 30
    assert settings.visibility_timeout_seconds == 180
    assert settings.max_receive_count == 2
    assert settings.request_queue_name == "crypto-risk-anomaly-prod-requests"


def test_cloudformation_short_tags_elsewhere_in_the_file_are_loaded_as_inert_values(tmp_path):
    # given a file full of short tags outside custom.queue
    path = write_serverless(
        tmp_path,
        textwrap.dedent("""
        service: svc
        provider:
          stage: ${opt:stage, 'dev'}
        """)
        + QUEUE_BLOCK
        + textwrap.dedent("""
        functions:
          f:
            events:
              - sqs: {arn: !GetAtt RequestQueue.Arn}
        resources:
          Conditions:
            IsProd: !Equals [!Ref "AWS::StackName", prod]
          Resources:
            Q:
              Type: AWS::SQS::Queue
              Properties:
                QueueName: !Sub "${AWS::StackName}-q"
                Tags: !If [IsProd, [{Key: a, Value: !Join ["-", [x, y]]}], !Ref "AWS::NoValue"]
                Policy: !GetAtt
                  - Q
                  - Arn
        """),
    )

    # when it is read
    document = read_serverless(path)
    settings = load_queue_settings(path)

    # then the tags survive as values and the queue block resolves
    assert document["functions"]["f"]["events"][0]["sqs"]["arn"] == CloudFormationTag("!GetAtt", "RequestQueue.Arn")
    properties = document["resources"]["Resources"]["Q"]["Properties"]
    assert properties["QueueName"] == CloudFormationTag("!Sub", "${AWS::StackName}-q")
    assert properties["Tags"].tag == "!If" and properties["Policy"] == CloudFormationTag("!GetAtt", ["Q", "Arn"])
    assert settings.request_queue_name == "svc-dev-requests"


def test_self_references_stage_params_and_nested_defaults_resolve(tmp_path):
    # given values that refer to other values, a params block per stage, and a nested default
    path = write_serverless(
        tmp_path,
        """
        service: svc
        params:
          default:
            MAX_RECEIVE_COUNT: 7
          staging:
            MAX_RECEIVE_COUNT: 3
        provider:
          stage: ${opt:stage, 'qa'}
          timeout: ${self:custom.base.timeout}
        custom:
          base:
            timeout: 45
          queue:
            functionTimeoutSeconds: ${param:TIMEOUT, ${self:custom.base.timeout}}
            visibilityTimeoutFactor: 6
            maxReceiveCount: ${param:MAX_RECEIVE_COUNT, 5}
            dlqRetentionSeconds: 1209600
            batchSize: ${param:BATCH_SIZE, 10}
            maximumBatchingWindowSeconds: ${param:MAXIMUM_BATCHING_WINDOW, 0}
            requestQueueName: "${self:service}-${sls:stage}-requests"
            deadLetterQueueName: ${param:DLQ_NAME, 'svc-dead-letters'}
        """,
    )

    # when read with no stage, then with the staging stage
    default = load_queue_settings(path)
    staging = load_queue_settings(path, stage="staging")

    # then ${sls:stage} follows provider.stage, params come from the file's blocks, and nested defaults resolve
    assert default.request_queue_name == "svc-qa-requests"
    assert default.function_timeout_seconds == 45
    assert default.max_receive_count == 7
    assert default.dead_letter_queue_name == "svc-dead-letters"
    assert staging.request_queue_name == "svc-staging-requests"
    assert staging.max_receive_count == 3


def test_a_variable_that_cannot_be_resolved_locally_names_the_key(tmp_path):
    path = write_serverless(
        tmp_path,
        "service: svc\n" + QUEUE_BLOCK.replace("${param:MAX_RECEIVE_COUNT, 5}", "${ssm:/queue/max-receive-count}"),
    )

    with pytest.raises(ConfigError) as error:
        load_queue_settings(path)

    assert "custom.queue.maxReceiveCount" in str(error.value) and "ssm:/queue/max-receive-count" in str(error.value)


def test_an_unresolvable_source_with_a_default_takes_the_default(tmp_path):
    path = write_serverless(
        tmp_path, "service: svc\n" + QUEUE_BLOCK.replace("${param:MAX_RECEIVE_COUNT, 5}", "${env:MAX_RECEIVE, 4}")
    )

    assert load_queue_settings(path).max_receive_count == 4


@pytest.mark.parametrize(
    "old, new, key",
    [
        ("${param:MAX_RECEIVE_COUNT, 5}", "0", "maxReceiveCount"),
        ("${param:TIMEOUT, 120}", "'two minutes'", "functionTimeoutSeconds"),
        ("${param:BATCH_SIZE, 10}", "20", "batchSize"),
        ("visibilityTimeoutFactor: 6", "visibilityTimeoutFactor: 600", "visibilityTimeoutFactor"),
        ("${self:service}-${sls:stage}-requests", "has spaces in it", "requestQueueName"),
    ],
)
def test_a_bad_value_is_refused_naming_the_key(tmp_path, old, new, key):
    path = write_serverless(tmp_path, "service: svc\n" + QUEUE_BLOCK.replace(old, new))

    with pytest.raises(ConfigError) as error:
        load_queue_settings(path)

    assert f"serverless.yml custom.queue.{key}" in str(error.value)


def test_variables_in_a_cycle_are_reported(tmp_path):
    path = write_serverless(
        tmp_path,
        "service: ${self:custom.name}\ncustom:\n  name: ${self:service}\n" + QUEUE_BLOCK.replace("custom:\n", ""),
    )

    with pytest.raises(ConfigError, match="cycle"):
        load_queue_settings(path)


def test_a_file_without_the_queue_block_says_so(tmp_path):
    path = write_serverless(tmp_path, "service: svc\nprovider:\n  name: aws\n")

    with pytest.raises(ConfigError, match="custom.queue"):
        load_queue_settings(path)
