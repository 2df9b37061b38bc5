"""A local alerts topic (contract §10) for the demo: SNS on moto's loopback server, read through a queue.

The topic gets an SQS queue subscribed with raw delivery, as a consumer in
AWS would; alerts are turned on for the block by setting ``ALERT_TOPIC_ARN``
and pointing the function's SNS client at the server with
``AWS_ENDPOINT_URL_SNS`` (and fake credentials, so nothing is ever signed
with real ones), exactly the settings a deployed function reads. Everything
is put back when the block ends.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from libs.models.episodes import ranked_by_severity
from libs.tools.local.sqs_endpoint import FAKE_CREDENTIALS, queue_arn

#: The variables set for the block (and restored after it).
_CREDENTIAL_VARIABLES = {
    "AWS_ACCESS_KEY_ID": FAKE_CREDENTIALS["aws_access_key_id"],
    "AWS_SECRET_ACCESS_KEY": FAKE_CREDENTIALS["aws_secret_access_key"],
    "AWS_SESSION_TOKEN": FAKE_CREDENTIALS["aws_session_token"],
}


@dataclass(frozen=True)
class AlertsInbox:
    """The local topic and the queue subscribed to it."""

    topic_arn: str
    queue_url: str


@contextmanager
def local_alerts(endpoint_url: str, sqs: Any, name: str = "crypto-risk-anomaly-alerts") -> Iterator[AlertsInbox]:
    """Create the topic and its subscribed queue on ``endpoint_url`` and turn alerts on for the block."""
    import boto3

    from libs.alerts.publish import reset_sns_client
    from libs.helpers.constants_helper import reset_settings

    region = sqs.meta.region_name
    sns = boto3.client("sns", endpoint_url=endpoint_url, region_name=region, **FAKE_CREDENTIALS)
    queue_url = sqs.create_queue(QueueName=f"{name}-inbox")["QueueUrl"]
    topic_arn = sns.create_topic(Name=name)["TopicArn"]
    sns.subscribe(
        TopicArn=topic_arn,
        Protocol="sqs",
        Endpoint=queue_arn(sqs, queue_url),
        Attributes={"RawMessageDelivery": "true"},
    )
    variables = {"ALERT_TOPIC_ARN": topic_arn, "AWS_ENDPOINT_URL_SNS": endpoint_url, **_CREDENTIAL_VARIABLES}
    saved = {key: os.environ.get(key) for key in variables}
    os.environ.update(variables)
    reset_settings()
    reset_sns_client()
    try:
        yield AlertsInbox(topic_arn=topic_arn, queue_url=queue_url)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        reset_settings()
        reset_sns_client()


def received_alerts(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    """Every alert waiting in the inbox (received and deleted), as its JSON body."""
    alerts: list[dict[str, Any]] = []
    while batch := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get(
        "Messages", []
    ):
        alerts += [json.loads(message["Body"]) for message in batch]
        entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)]
        sqs.delete_message_batch(QueueUrl=queue_url, Entries=entries)
    return alerts


def ranked(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Alerts most severe first, in contract §10's order (the one ranking rule of libs.models.episodes)."""
    if not alerts:
        return []
    table = pd.DataFrame({"position": range(len(alerts)), **{key: [a[key] for a in alerts] for key in _RANKED_BY}})
    table["severity"] = table["severity"].astype(float)
    order = ranked_by_severity(table, "severity", list(_RANKED_BY[1:]))["position"]
    return [alerts[position] for position in order]


_RANKED_BY = ("severity", "coin_id", "signal", "timestamp", "direction")


def alert_line(alert: dict[str, Any]) -> str:
    """One alert on one line: time, coin, signal, direction, level, severity, and the windows that raised it."""
    moment = datetime.strptime(alert["timestamp"][:16], "%Y-%m-%dT%H:%M")
    severity = "null" if alert["severity"] is None else f"{alert['severity']:.1f}"
    windows = "/".join(f"{w['period_days']}d" for w in alert.get("windows", []))
    return (
        f"{moment:%Y-%m-%d %H:%M}  {alert['coin_id']}  {alert['signal']}  {alert['direction']}  "
        f"level {alert['level']}  severity {severity}" + (f"  ({windows})" if windows else "")
    )
