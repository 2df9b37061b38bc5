"""A store whose flags the real function wrote: what the report's integration and browser tests read.

Synthetic coins (with planted spikes and dips) plus one coin whose volume is
flat and then breaks (a flat-window episode), then a 7-day backfill through
``handler.handler``, as the demo does it, so the stored entries are exactly
what the function writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from libs.helpers.mongodb_helper import ensure_indexes
from libs.tools.local.lambda_context import LocalContext
from libs.tools.synthetic import synthetic_documents
from tests.fakes.sqs import sqs_event

END = datetime(2024, 11, 1)
FLAT_COIN = "coin-flat"


@dataclass(frozen=True)
class JudgedStore:
    since: datetime
    as_of: datetime
    coins: list[str]


def flat_coin_documents(end: datetime, days: int, per_day: int) -> list[dict[str, Any]]:
    """Volume 100.0 at every observation but one, two days before ``end``, at 150.0: a flat window broken."""
    step = timedelta(days=1) / per_day
    stamps = [end - step * i for i in range(days * per_day)]
    broken = end - timedelta(days=2)
    return [{"coin_id": FLAT_COIN, "timestamp": t, "volume": 150.0 if t == broken else 100.0} for t in stamps]


def judged_store(store: Any, *, coins: int = 8, days: int = 20, per_day: int = 4, seed: int = 11) -> JudgedStore:
    """Seed ``store`` and judge the last 7 days of every coin with the real handler (range mode)."""
    import handler

    documents, _ = synthetic_documents(coins=coins, days=days, per_day=per_day, end=END, seed=seed)
    documents += flat_coin_documents(END, days, per_day)
    store.insert_many(documents)
    ensure_indexes(store)
    names = sorted({doc["coin_id"] for doc in documents})
    since = END - timedelta(days=7)
    body = {"coin_ids": names, "since": since.isoformat(), "as_of": END.isoformat(), "request_id": "report-test"}
    response = handler.handler(sqs_event(body), LocalContext())
    assert response == {"batchItemFailures": []}, response
    return JudgedStore(since=since, as_of=END, coins=names)


def judge_coins(store: Any, coin_ids: tuple[str, ...], *, days: int = 20, seed: int = 5) -> None:
    """Seed synthetic coins named ``coin_ids`` (any text) and judge their last 7 days with the real handler."""
    import handler

    documents, _ = synthetic_documents(coins=len(coin_ids), days=days, per_day=4, end=END, seed=seed)
    names = dict(zip(sorted({d["coin_id"] for d in documents}), coin_ids))
    for document in documents:
        document["coin_id"] = names[document["coin_id"]]
    store.insert_many(documents)
    since = END - timedelta(days=7)
    body = {"coin_ids": list(coin_ids), "since": since.isoformat(), "as_of": END.isoformat()}
    response = handler.handler(sqs_event(body), LocalContext())
    assert response == {"batchItemFailures": []}, response
