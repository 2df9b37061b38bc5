"""The benchmark's synthetic dataset, shaped as pymongo hands documents over.

Seeded and vectorised: every value, every junk cell and every timestamp is
drawn with numpy for all coins at once; only the last step builds the dicts
(``_id`` an ``ObjectId``, ``timestamp`` a naive ``datetime`` at millisecond
precision, signals as floats). Documents come coin by coin, each coin's in
time order, as a query served by the ``{coin_id: 1, timestamp: 1}`` index
returns them.

A few percent of signal cells are missing, spread over every kind contract
§2 names (absent, null, NaN, ±inf, booleans, strings, other
non-numbers), and a few are numbers in another form (int, Decimal128) that
must still count. A handful of documents carry no usable ``coin_id`` or
``timestamp``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import numpy as np
from bson import ObjectId
from bson.decimal128 import Decimal128

from libs.helpers.constants_helper import SIGNALS

#: The end of the dataset: the newest observation of every coin is stamped at (or just before) it.
AS_OF = datetime(2024, 11, 1)

#: Missing kinds (contract §2) and how each is written into a cell; "absent" deletes the key.
MISSING_KINDS: tuple[str, ...] = ("absent", "null", "nan", "inf", "-inf", "bool", "string", "object")
#: Share of signal cells that are missing (spread evenly over MISSING_KINDS).
MISSING_RATE = 0.04
#: Share of signal cells stored as an int or a Decimal128 (numbers all the same).
OTHER_NUMBER_RATE = 0.01
#: Share of documents without a usable coin_id or timestamp.
UNUSABLE_RATE = 0.0005


@dataclass(frozen=True)
class Shape:
    """How big the dataset is."""

    coins: int = 2_000
    days: int = 31
    per_day: int = 24
    seed: int = 2024

    @property
    def documents(self) -> int:
        return self.coins * self.days * self.per_day


def coin_name(index: int) -> str:
    return f"coin-{index:05d}"


def _values(rng: np.random.Generator, coins: int, steps: int) -> dict[str, np.ndarray]:
    """Signal values, shape (coins, steps), at the scales of the real collection."""
    price = 10 ** rng.uniform(-2, 4, (coins, 1)) * np.exp(np.cumsum(rng.normal(0, 0.01, (coins, steps)), axis=1))
    supply = 10 ** rng.uniform(6, 10, (coins, 1))
    return {
        "latest_price": price,
        "market_cap_score": np.clip(rng.normal(60, 3, (coins, steps)), 0, 100),
        "liquidity_risk_score": np.clip(rng.normal(40, 3, (coins, steps)), 0, 100),
        "volatility_risk_score": np.clip(rng.normal(50, 3, (coins, steps)), 0, 100),
        "volume": 10 ** rng.uniform(4, 9, (coins, 1)) * rng.lognormal(0, 0.15, (coins, steps)),
        "market_cap": price * supply,
        "volatility_index": np.abs(rng.normal(3, 0.3, (coins, steps))),
    }


def _junk(kind: str, value: float) -> Any:
    return {
        "null": None,
        "nan": float("nan"),
        "inf": float("inf"),
        "-inf": float("-inf"),
        "bool": value > 0,
        "string": "n/a",
        "object": {"$numberDouble": str(value)},
    }[kind]


def _other_number(value: float, as_int: bool) -> Any:
    return int(round(value)) if as_int else Decimal128(Decimal(repr(value)))


#: Field order of a document, as the loader's projection returns it.
KEYS: tuple[str, ...] = ("_id", "coin_id", "timestamp", *SIGNALS)


def _dicts(columns: list[list[Any]]) -> list[dict[str, Any]]:
    # A dict display is about twice as fast as dict(zip(KEYS, row)) at this size.
    return [
        {
            "_id": i,
            "coin_id": c,
            "timestamp": t,
            "latest_price": s0,
            "market_cap_score": s1,
            "liquidity_risk_score": s2,
            "volatility_risk_score": s3,
            "volume": s4,
            "market_cap": s5,
            "volatility_index": s6,
        }
        for i, c, t, s0, s1, s2, s3, s4, s5, s6 in zip(*columns)
    ]


def _batch(shape: Shape, first_coin: int, coins: int) -> list[dict[str, Any]]:
    """The documents of coins ``first_coin`` … ``first_coin + coins − 1``, seeded by the batch."""
    steps = shape.days * shape.per_day
    rng = np.random.default_rng([shape.seed, first_coin, coins])
    n = coins * steps
    step_ms = 86_400_000 // shape.per_day
    # hourly (per_day) grid ending at AS_OF, each coin a few seconds off the grid, a little jitter per observation
    grid = np.arange(-(steps - 1), 1, dtype=np.int64) * step_ms
    offset = -rng.integers(0, 30_000, (coins, 1))
    jitter = -rng.integers(0, 5_000, (coins, steps))
    jitter[:, -1] = 0
    stamps_ms = (np.datetime64(AS_OF, "ms").astype(np.int64) + grid + offset + jitter).ravel()
    stamps = stamps_ms.astype("datetime64[ms]").astype(object).tolist()
    coin_ids = np.repeat(np.array([coin_name(first_coin + c) for c in range(coins)], dtype=object), steps).tolist()
    raw_ids = rng.integers(0, 256, (n, 12), dtype=np.uint8).tobytes()
    ids = [ObjectId(raw_ids[i : i + 12]) for i in range(0, 12 * n, 12)]
    values = _values(rng, coins, steps)
    columns: list[list[Any]] = [ids, coin_ids, stamps]
    patches: list[tuple[int, int, Any]] = []  # (row, column, junk); column index into KEYS
    for s, signal in enumerate(SIGNALS):
        column = values[signal].ravel()
        draw = rng.random(n)
        missing = np.flatnonzero(draw < MISSING_RATE)
        other = np.flatnonzero((draw >= MISSING_RATE) & (draw < MISSING_RATE + OTHER_NUMBER_RATE))
        kinds = rng.integers(0, len(MISSING_KINDS), len(missing))
        as_int = rng.random(len(other)) < 0.5
        columns.append(column.tolist())
        for row, kind in zip(missing.tolist(), kinds.tolist()):
            patches.append((row, 3 + s, MISSING_KINDS[kind]))
        for row, integer in zip(other.tolist(), as_int.tolist()):
            columns[3 + s][row] = _other_number(float(column[row]), integer)
    docs = _dicts(columns)
    for row, col, kind in patches:
        if kind == "absent":
            del docs[row][KEYS[col]]
        else:
            docs[row][KEYS[col]] = _junk(kind, columns[col][row] if isinstance(columns[col][row], float) else 0.0)
    unusable = np.flatnonzero(rng.random(n) < UNUSABLE_RATE)
    for i, row in enumerate(unusable.tolist()):
        if i % 3 == 0:
            docs[row]["coin_id"] = None
        elif i % 3 == 1:
            docs[row]["coin_id"] = ""
        else:
            docs[row]["timestamp"] = str(docs[row]["timestamp"])
    return docs


#: Coins per generated batch (about 48,000 documents, a few 16 MB cursor batches).
COINS_PER_BATCH = 64


def stream(shape: Shape) -> Iterator[dict[str, Any]]:
    """The documents, built a batch of coins at a time, as a cursor delivers them (nothing kept)."""
    for first in range(0, shape.coins, COINS_PER_BATCH):
        yield from _batch(shape, first, min(COINS_PER_BATCH, shape.coins - first))


def documents(shape: Shape) -> list[dict[str, Any]]:
    """All the documents in one list: the same ones :func:`stream` yields."""
    return list(stream(shape))


def latest_request_body() -> dict[str, Any]:
    """Latest mode: every coin, all seven signals, 3/7/30 days, as of the dataset's end."""
    return {"as_of": AS_OF.isoformat()}
