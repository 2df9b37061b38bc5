"""Alerts (contract §10): what a latest-mode message publishes to SNS after its flags are written.

:func:`publish_alerts_for` is the one call the processor makes; the parts are
pure (:mod:`libs.models.raises` finds the entries that raise their episode,
:mod:`libs.alerts.build` turns them into ranked, capped alerts) except
:mod:`libs.alerts.publish`, the SNS side. Nothing here imports boto3 until a
message has an alert to publish, and nothing of it is imported with alerts off.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from libs.alerts.build import plan_alerts
from libs.alerts.publish import publish_alerts, sns_client
from libs.deadline import NO_DEADLINE, Deadline
from libs.helpers.constants_helper import Settings
from libs.models.model import ModelParams, SortedRows
from libs.models.raises import message_raises
from libs.request import RiskRequest


@dataclass(frozen=True)
class AlertOutcome:
    """What a message did about alerts: the summary line's ``alerts_*`` fields and the Alerts* metrics."""

    #: Alerts SNS took.
    published: int = 0
    #: Alerts raised beyond ALERT_MAX_PER_MESSAGE: not published (the ones an operator would miss).
    withheld: int = 0


def publish_alerts_for(
    frame: pd.DataFrame,
    rows: SortedRows | None,
    params: ModelParams,
    results: pd.DataFrame,
    request: RiskRequest,
    settings: Settings,
    *,
    deadline: Deadline = NO_DEADLINE,
) -> AlertOutcome:
    """Find the message's raises and publish their alerts; call it after the flags are written.

    ``frame`` is the message's history (loaded with alerts on, so it reaches
    back over the memory), ``rows``, ``params`` and ``results`` the model's.
    Only for a latest-mode message with alerts on: the processor decides that,
    in one place (a backfill pages nobody). Raises
    :class:`~libs.errors.AlertPublishFailed` when SNS does not take them all.
    """
    raises = message_raises(frame, rows, params, results, settings.severity_scale, settings.raise_rules)
    plan = plan_alerts(raises, request.request_id, settings.alert_max_per_message)
    published = 0
    if plan.alerts:
        client = sns_client(settings.alert_topic_arn)
        published = publish_alerts(plan.alerts, settings.alert_topic_arn, client, deadline=deadline)
    return AlertOutcome(published=published, withheld=plan.withheld)
