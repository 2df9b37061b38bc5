"""End to end over moto's SQS server: producer → queue → poller → handler → store, with failures injected.

A few hundred messages (latest mode, one-day backfills, multi-coin requests,
verbatim duplicates as at-least-once delivery produces them, and invalid
bodies) go through the queue pair serverless.yml declares. Some valid messages
meet a database error on their first attempt: the read fails, or the write
fails after half of the updates went out. The test proves conservation (every
message sent is deleted after one success or sits in the DLQ after exactly
maxReceiveCount attempts; none lost, none both), that duplicates produce the
same result, and that every flag in the store equals the numpy reference.
"""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from datetime import datetime, timedelta

import pytest

import handler
from libs import processor
from libs.helpers.constants_helper import SIGNALS
from libs.helpers.mongodb_helper import DriverReader
from libs.processor import process_message
from libs.tools.local.poller import Poller
from libs.tools.local.producer import send_bodies
from libs.tools.local.sqs_endpoint import peek_messages, queue_counts
from libs.tools.synthetic import synthetic_documents
from tests.fakes.faults import HalfWriting, Unreachable
from tests.fakes.reference import expected_written

END = datetime(2024, 11, 1)
COINS = [f"coin-{i:04d}" for i in range(25)]
#: Each coin is backfilled in SPANS requests of SPAN_DAYS days each, back from END.
SPAN_DAYS, SPANS = 2, 4
INVALID_KINDS = (
    "not json at all",
    {"periods": [3.0]},
    {"colour": "red"},
    {"since": "2024-01-01", "as_of": "2024-11-01"},
    {"coin_ids": []},
    {"signals": ["sentiment"]},
)


class FaultInjector:
    """Stands in for ``process_message`` in the handler: records every attempt, fails chosen first attempts."""

    def __init__(self, store, fail_read: set[str], fail_write: set[str]) -> None:
        self._store, self._fail_read, self._fail_write = store, fail_read, fail_write
        self.attempts: Counter[str] = Counter()
        self.successes: dict[str, list] = defaultdict(list)
        self.bodies: dict[str, str] = {}
        self.half_writers: list[HalfWriting] = []

    def __call__(self, body, message_id, settings, **kwargs):
        self.attempts[message_id] += 1
        self.bodies[message_id] = body
        request_id = _request_id(body)
        if self.attempts[message_id] == 1 and request_id in self._fail_read:
            kwargs["reader"] = DriverReader(Unreachable())
        elif self.attempts[message_id] == 1 and request_id in self._fail_write:
            self.half_writers.append(HalfWriting(self._store))
            kwargs["collection"] = self.half_writers[-1]
        summary = process_message(body, message_id, settings, **kwargs)
        self.successes[message_id].append(summary)
        return summary


def _request_id(body: str) -> str | None:
    try:
        decoded = json.loads(body)
    except ValueError:
        return None
    return decoded.get("request_id") if isinstance(decoded, dict) else None


def valid_bodies() -> list[str]:
    requests: list[dict] = [{"coin_ids": [coin], "as_of": END.isoformat()} for coin in COINS]
    for coin in COINS:
        for span in range(SPANS):
            requests.append(
                {
                    "coin_ids": [coin],
                    "since": (END - timedelta(days=SPAN_DAYS * (span + 1))).isoformat(),
                    "as_of": (END - timedelta(days=SPAN_DAYS * span)).isoformat(),
                }
            )
    for start in range(0, len(COINS), 4):
        requests.append(
            {
                "coin_ids": COINS[start : start + 4],
                "since": (END - timedelta(days=2)).isoformat(),
                "as_of": END.isoformat(),
                "signals": ["volume", "latest_price"],
                "periods": [7],
            }
        )
    return [json.dumps({**request, "request_id": f"r{n}"}) for n, request in enumerate(requests)]


def invalid_bodies(count: int) -> list[str]:
    bodies = []
    for n in range(count):
        kind = INVALID_KINDS[n % len(INVALID_KINDS)]
        bodies.append(f"{kind} #{n}" if isinstance(kind, str) else json.dumps({**kind, "request_id": f"bad{n}"}))
    return bodies


@pytest.fixture
def seeded(store):
    documents, _ = synthetic_documents(coins=len(COINS), days=31, per_day=2, end=END, seed=11)
    store.insert_many(documents)
    return store


def summary_result(summary) -> tuple:
    return (
        summary.mode,
        summary.coins_judged,
        summary.observations_judged,
        summary.documents_written,
        tuple(sorted(summary.anomalies.items())),
    )


def test_every_message_is_processed_once_or_dead_lettered_and_the_flags_match_numpy(
    seeded, sqs, queues, queue_settings, monkeypatch
):
    # given a few hundred messages, shuffled: valid ones, verbatim duplicates of some, and invalid ones
    store = seeded
    valid = valid_bodies()
    duplicates = valid[::3]
    invalid = invalid_bodies(30)
    bodies = valid + duplicates + invalid
    random.Random(3).shuffle(bodies)
    # and a database error on the first attempt of some valid requests: on the read, or half-way through the write
    fail_read = {f"r{n}" for n in range(0, len(valid), 9)}
    fail_write = {f"r{n}" for n in range(4, len(valid), 11)} - fail_read
    injector = FaultInjector(store, fail_read, fail_write)
    monkeypatch.setattr(processor, "process_message", injector)  # what process_and_report calls

    # when the producer sends them and the poller feeds them to the handler until the queue is drained
    sent = send_bodies(sqs, queues.url, bodies)
    stats = Poller(
        sqs,
        queues.url,
        handler=handler.handler,
        batch_size=queue_settings.batch_size,
        function_timeout_ms=queue_settings.function_timeout_ms,
    ).run(until_empty=True, max_seconds=150)

    # then every message sent is either deleted after exactly one success or in the DLQ, never both, none lost
    assert stats.stopped == "queue drained" and len(bodies) >= 200
    sent_ids = set(sent.message_ids)
    assert len(sent_ids) == len(bodies) and not sent.rejected
    deleted = stats.deleted_message_ids
    dead = {m["MessageId"]: m["Body"] for m in peek_messages(sqs, queues.dlq_url)}
    assert len(deleted) == len(set(deleted))
    assert set(deleted).isdisjoint(dead) and set(deleted) | set(dead) == sent_ids
    assert queue_counts(sqs, queues.url).drained
    # and the DLQ holds exactly the invalid bodies, each attempted maxReceiveCount times, never succeeding
    assert Counter(dead.values()) == Counter(invalid)
    assert {injector.attempts[m] for m in dead} == {queue_settings.max_receive_count}
    assert not any(injector.successes[m] for m in dead)
    # and every deleted message succeeded exactly once; those hit by a database error on their second attempt
    assert all(len(injector.successes[m]) == 1 for m in deleted)
    for message_id in deleted:
        request_id = _request_id(injector.bodies[message_id])
        assert injector.attempts[message_id] == (2 if request_id in fail_read | fail_write else 1)
    assert sum(w.written for w in injector.half_writers) > 0  # half-written messages really left partial flags
    # and messages with the same body (duplicates) produced the same result
    results_by_body: dict[str, set] = defaultdict(set)
    for message_id in deleted:
        results_by_body[injector.bodies[message_id]].add(summary_result(injector.successes[message_id][0]))
    assert len(results_by_body) == len(valid) and all(len(results) == 1 for results in results_by_body.values())

    # and the judged documents are exactly those the requests cover, every flag equal to the numpy reference
    documents = list(store.find({}))
    judged = {(d["coin_id"], d["timestamp"]) for d in documents if "anomalies" in d}
    covered = timedelta(days=SPAN_DAYS * SPANS)
    assert judged == {(d["coin_id"], d["timestamp"]) for d in documents if END - covered <= d["timestamp"] <= END}
    by_coin: dict[str, list] = defaultdict(list)
    for doc in documents:
        by_coin[doc["coin_id"]].append(doc)
    checked = 0
    for doc in (d for d in documents if "anomalies" in d):
        for signal in SIGNALS:
            for period in (3, 7, 30):
                expected = expected_written(by_coin[doc["coin_id"]], doc, signal, period, 1.5, 4)
                assert doc["anomalies"].get(signal, {}).get(f"{period}d") == expected
                checked += expected is not None
    assert checked > 4_000
