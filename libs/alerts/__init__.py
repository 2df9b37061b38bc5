"""Alerts (contract §10): what a latest-mode message publishes to SNS after its flags are written.

:func:`publish_alerts_for` is the one call the processor makes; the parts are
pure (:mod:`libs.models.starts` finds the flags that start an episode,
:mod:`libs.alerts.build` turns them into ranked, capped alerts) except
:mod:`libs.alerts.publish`, the SNS side. Nothing here imports boto3 until a
message has an alert to publish.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from libs.alerts.build import plan_alerts
from libs.alerts.publish import publish_alerts, sns_client
from libs.helpers.constants_helper import Settings
from libs.models.model import ModelParams
from libs.models.starts import starting_flags
from libs.request import RiskRequest


@dataclass(frozen=True)
class AlertOutcome:
    """What a message did about alerts: the summary line's ``alerts_*`` fields and the Alerts* metrics."""

    #: Alerts SNS took.
    published: int = 0
    #: Alerts that passed ALERT_MIN_SEVERITY but exceeded ALERT_MAX_PER_MESSAGE (the ones an operator may miss).
    withheld: int = 0
    #: Alerts below ALERT_MIN_SEVERITY without a flat window (left out by design).
    below_min_severity: int = 0
    #: Episode starts found: every alert before any filter.
    starts: int = 0


def publish_alerts_for(
    frame: pd.DataFrame,
    params: ModelParams,
    results: pd.DataFrame,
    request: RiskRequest,
    settings: Settings,
    *,
    deadline: float | None = None,
) -> AlertOutcome:
    """Find the message's episode starts and publish their alerts; call it after the flags are written.

    ``frame`` is the message's history (loaded with alerts on, so it reaches
    the previous steps), ``params`` and ``results`` the model's. Only for a
    latest-mode message with alerts on: the processor decides that, in one
    place (a backfill pages nobody). Raises
    :class:`~libs.errors.AlertPublishFailed` when SNS does not take them all.
    """
    starts = starting_flags(frame, params, results, settings.latest_lookback_hours)
    plan = plan_alerts(starts, request.request_id, settings.alert_min_severity, settings.alert_max_per_message)
    published = 0
    if plan.alerts:
        client = sns_client(settings.alert_topic_arn)
        published = publish_alerts(plan.alerts, settings.alert_topic_arn, client, deadline=deadline)
    return AlertOutcome(
        published=published, withheld=plan.withheld, below_min_severity=plan.below_min_severity, starts=plan.starts
    )
