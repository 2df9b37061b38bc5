"""After an outage, a fix and a redrive, the dead-lettered requests are processed: over moto's SQS server.

The local pipeline of the demo (producer, queue pair as serverless.yml declares
it with a 1 s visibility timeout, poller, handler, embedded store): first every
delivery fails, as during a database outage, so every request is dead-lettered,
the demo's invalid ones among them. Then ``redrive`` puts them back and the real
function takes them: the valid requests write their flags, and each invalid one
is dead-lettered again, once.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from libs.tools.local.demo import INVALID_BODIES
from libs.tools.local.poller import Poller
from libs.tools.local.producer import request_bodies, send_bodies
from libs.tools.local.redrive import redrive
from libs.tools.local.sqs_endpoint import peek_messages, queue_counts
from libs.tools.synthetic import synthetic_documents

END = datetime(2024, 11, 1)


def outage(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The function while the database is down: every message of the batch fails."""
    return {"batchItemFailures": [{"itemIdentifier": record["messageId"]} for record in event["Records"]]}


def test_dead_lettered_requests_are_processed_after_a_redrive(store, sqs, queues):
    # given a store of six coins and the demo's mix: valid latest requests and its invalid bodies
    documents, _ = synthetic_documents(coins=6, days=32, per_day=4, end=END, seed=13)
    store.insert_many(documents)
    coins = sorted({doc["coin_id"] for doc in documents})
    valid = request_bodies(coins, 2, {"as_of": END.isoformat(), "request_id": "after-outage"})
    bodies = [*INVALID_BODIES, *valid]
    assert not send_bodies(sqs, queues.url, bodies).rejected

    # and an outage during which every delivery failed until SQS dead-lettered every request
    during = Poller(sqs, queues.url, handler=outage, wait_seconds=0).run(until_empty=True, max_seconds=120)
    assert during.stopped == "queue drained" and during.succeeded == 0
    assert not list(store.find({"anomalies": {"$exists": True}}))
    # (a dry run shows them all, and leaves them all there)
    looked = redrive(sqs, queues.url, dry_run=True)
    assert Counter(letter.body for letter in looked.listed) == Counter(bodies)
    assert queue_counts(sqs, queues.dlq_url).visible == len(bodies)

    # when, the database back, ops redrive the DLQ and the real function polls again
    report = redrive(sqs, queues.url)
    after = Poller(sqs, queues.url, wait_seconds=0).run(until_empty=True, max_seconds=120)

    # then every request was moved once, the valid ones were processed and flagged every coin ...
    assert report.moved == len(bodies) and report.complete
    assert after.stopped == "queue drained" and after.succeeded == len(valid)
    judged = {doc["coin_id"] for doc in store.find({"timestamp": END, "anomalies": {"$exists": True}})}
    assert judged == set(coins)
    # ... and only the invalid ones are in the DLQ again, each once
    assert Counter(m["Body"] for m in peek_messages(sqs, queues.dlq_url)) == Counter(INVALID_BODIES)
