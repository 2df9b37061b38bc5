"""The report's one read, and the tools' one reader of stored flags: the entries of contract §5 as a flat frame.

The function writes ``anomalies.<signal>.<P>d = {is_anomaly, value, q1, q3,
lower, upper, n, k}`` onto each judged document. The report reads them back
with one query, served by the ``{coin_id: 1, timestamp: 1}`` index (its filter
names ``coin_id`` first, as the function's own history query does), and turns
the nested documents into one row per (observation, signal, period): the frame
:func:`libs.models.episodes.build_episodes` takes. The plot (which points the
store holds flagged) and the demo (its tally of the flags) read stored
documents with :func:`documents_to_entries` too.

How it stays fast: documents are consumed a chunk at a time (a cursor is never
held whole) and every level of nesting is walked with C-level passes
(``map(dict.get, …)``, ``itertools.compress``, ``np.fromiter``); the only
Python loops are over chunks, the few signals and the few windows.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import chain, compress, repeat
from typing import Any

import numpy as np
import pandas as pd

from libs.helpers.mongodb_helper import Reader
from libs.jsonvalues import is_unicode_text
from libs.models.frames import empty_frame
from libs.models.history import CHUNK_SIZE, as_number, chunks
from libs.tools.report.scope import ReportScope

_NUMBERS = ("value", "q1", "q3", "lower", "upper", "k")
#: Columns of the entries frame, in this order, and their dtypes.
ENTRY_DTYPES: dict[str, Any] = {
    "coin_id": object,
    "signal": object,
    "period_days": np.int64,
    "timestamp": "datetime64[ms]",
    **dict.fromkeys(_NUMBERS, np.float64),
    "is_anomaly": "boolean",
}
ENTRY_COLUMNS = tuple(ENTRY_DTYPES)
#: The key of a window's entry under ``anomalies.<signal>``: ``7d`` for 7 days.
_PERIOD_KEY = re.compile(r"[1-9][0-9]{0,2}d")


#: The numbers a judged entry (``is_anomaly`` true or false) cannot do without (contract §11).
_FENCES = ("q1", "q3", "lower", "upper")
#: The types the fast path converts exactly (what the function writes): anything else goes through ``as_number``.
_PLAIN_NUMBERS = frozenset({float, int, type(None)})


@dataclass(frozen=True)
class StoredEntries:
    """The entries frame (columns :data:`ENTRY_COLUMNS`), how many documents the query returned, and how
    many stored entries were left out because their numbers cannot be used (contract §11)."""

    frame: pd.DataFrame
    documents: int
    unusable: int = 0


def entries_query(scope: ReportScope) -> tuple[dict[str, Any], dict[str, int]]:
    """Filter and projection of the report's one query.

    ``coin_id`` comes first so the index serves the query, as in
    :func:`libs.helpers.mongodb_helper.history_query`; with no coin filter
    ``{"$gt": ""}`` matches every usable id and still uses the index. Only
    judged documents are returned, and of them only the page key (``_id``,
    ``timestamp``), ``coin_id`` and the requested entries.
    """
    coins: dict[str, Any] = {"$in": list(scope.coin_ids)} if scope.coin_ids else {"$gt": ""}
    query = {
        "coin_id": coins,
        "timestamp": {"$gte": scope.since, "$lte": scope.as_of},
        "anomalies": {"$exists": True},
    }
    if scope.periods_days is None:
        paths = [f"anomalies.{signal}" for signal in scope.signals]
    else:
        paths = [f"anomalies.{signal}.{period}d" for signal in scope.signals for period in scope.periods_days]
    # ``_id`` too: the Data API backend pages by (timestamp, _id), so every document must carry both
    projection = {"_id": 1, "coin_id": 1, "timestamp": 1, **dict.fromkeys(paths, 1)}
    return query, projection


def read_entries(reader: Reader, scope: ReportScope) -> StoredEntries:
    """Run the one query through ``reader`` and build the entries frame (raises ``StoreUnavailable``)."""
    query, projection = entries_query(scope)
    return documents_to_entries(reader.find(query, projection), scope.signals, scope.periods_days)


def documents_to_entries(
    documents: Iterable[dict[str, Any]],
    signals: Sequence[str],
    periods_days: Sequence[int] | None = None,
    *,
    with_ids: bool = False,
) -> StoredEntries:
    """One row per stored entry of ``signals`` (and ``periods_days``) in ``documents``.

    A row is kept for every entry that is a sub-document, whatever its flag
    (an unflagged or insufficient entry is still a step: it ends an episode),
    unless its numbers cannot be used (contract §11): its ``value`` is not a
    finite number, or it is judged (``is_anomaly`` true or false) and one of
    ``q1``, ``q3``, ``lower``, ``upper`` is not. Such entries are left out and
    counted (``unusable``); an insufficient entry (``is_anomaly`` null) needs
    no fences, as contract §5 writes it with null ones. A number is what
    contract §2 calls one (int, float, Decimal128; not a boolean); ``k`` that is
    not one becomes NaN; ``is_anomaly`` is a nullable boolean (NA where null
    or not a boolean; flagged means ``True``). Documents without a usable
    ``coin_id`` (a non-empty string the driver could decode) or ``timestamp``
    add nothing. Windows are ``periods_days``, or every ``<P>d`` key found when
    None. ``with_ids`` puts each row's document ``_id`` in a first column (to
    match flags to documents).
    """
    parts: list[dict[str, np.ndarray]] = []
    read = 0
    for chunk in chunks(documents, CHUNK_SIZE):
        read += len(chunk)
        parts.extend(_chunk_entries(chunk, signals, periods_days, with_ids))
    if not parts:
        return StoredEntries(empty_entries(with_ids=with_ids), read)
    columns = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
    flags = columns.pop("is_true"), columns.pop("is_false")
    judged = flags[0] | flags[1]
    usable = np.isfinite(columns["value"])
    for name in _FENCES:
        usable &= ~judged | np.isfinite(columns[name])
    frame = pd.DataFrame(columns, copy=False)
    frame["is_anomaly"] = pd.arrays.BooleanArray(flags[0], ~judged)
    unusable = int(len(usable) - usable.sum())
    if unusable:
        frame = frame[usable].reset_index(drop=True)
    return StoredEntries(frame[_columns(with_ids)], read, unusable)


def flagged_rows(entries: pd.DataFrame) -> np.ndarray:
    """Which rows of an entries frame the store holds flagged (``is_anomaly`` true; null is not)."""
    return entries["is_anomaly"].fillna(False).to_numpy(dtype=bool)


def _columns(with_ids: bool) -> list[str]:
    return ["_id", *ENTRY_COLUMNS] if with_ids else list(ENTRY_COLUMNS)


def empty_entries(*, with_ids: bool = False) -> pd.DataFrame:
    """An entries frame with no rows and the right dtypes."""
    return empty_frame({"_id": object, **ENTRY_DTYPES} if with_ids else ENTRY_DTYPES)


def _dicts(items: list[Any]) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Positions of the items that are dicts, and those dicts (C-level passes)."""
    mask = np.fromiter(map(isinstance, items, repeat(dict)), dtype=bool, count=len(items))
    if mask.all():
        return np.arange(len(items)), items
    return np.flatnonzero(mask), list(compress(items, mask))


def _get(dicts: list[dict[str, Any]], key: str) -> list[Any]:
    return list(map(dict.get, dicts, repeat(key)))


def _floats(values: list[Any]) -> np.ndarray:
    """Float64 values; NaN for null, non-numbers and non-finite numbers (C-level passes).

    Floats, ints and nulls (all the function writes) take one pass; a column holding anything else (a
    boolean, a string, a Decimal128) is read value by value as the loader reads signals.
    """
    if not _PLAIN_NUMBERS.issuperset(map(type, values)):
        return np.array([as_number(v) for v in values], dtype=np.float64)
    try:
        column = np.fromiter(map(getattr, values, repeat("real"), repeat(math.nan)), np.float64, len(values))
    except OverflowError:  # an int beyond float range
        column = np.array([as_number(v) for v in values], dtype=np.float64)
    column[~np.isfinite(column)] = np.nan
    return column


def _usable(chunk: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions of documents with a usable coin_id and a date timestamp, their coin ids and stamps.

    A usable coin id is a non-empty string the driver could decode (contract §2): one holding a lone
    surrogate (bytes that were not UTF-8) could not even be sent back in the plot's query.
    """
    coins = _get(chunk, "coin_id")
    stamps = _get(chunk, "timestamp")
    usable = np.fromiter(map(isinstance, coins, repeat(str)), dtype=bool, count=len(chunk))
    usable &= np.fromiter(map(isinstance, stamps, repeat(datetime)), dtype=bool, count=len(chunk))
    usable &= np.fromiter(map(bool, coins), dtype=bool, count=len(chunk))
    strings = np.flatnonzero(usable)
    usable[strings] = np.fromiter(map(is_unicode_text, compress(coins, usable)), dtype=bool, count=len(strings))
    rows = np.flatnonzero(usable)
    coin_ids = np.fromiter(compress(coins, usable), dtype=object, count=len(rows))
    times = pd.to_datetime(np.fromiter(compress(stamps, usable), dtype=object, count=len(rows)), utc=True)
    return rows, coin_ids, times.tz_localize(None).as_unit("ms").to_numpy()


def _period_keys(signal_entries: list[dict[str, Any]], periods_days: Sequence[int] | None) -> list[tuple[str, int]]:
    if periods_days is not None:
        return [(f"{period}d", period) for period in periods_days]
    keys = set(chain.from_iterable(map(dict.keys, signal_entries)))
    found = [(key, int(key[:-1])) for key in keys if isinstance(key, str) and _PERIOD_KEY.fullmatch(key)]
    return sorted(found, key=operator.itemgetter(1))


def _chunk_entries(
    chunk: list[dict[str, Any]], signals: Sequence[str], periods_days: Sequence[int] | None, with_ids: bool
) -> Iterator[dict[str, np.ndarray]]:
    rows, coin_ids, times = _usable(chunk)
    if not len(rows):
        return
    ids = np.fromiter(_get(chunk, "_id"), dtype=object, count=len(chunk))[rows] if with_ids else None
    # ``of_doc[i]`` is the usable document a position refers to, followed level by level down the nesting.
    of_doc = np.full(len(chunk), -1, dtype=np.int64)
    of_doc[rows] = np.arange(len(rows))
    anomalies_at, anomalies = _dicts(_get(chunk, "anomalies"))
    keep = of_doc[anomalies_at] >= 0
    anomalies_at = anomalies_at[keep]
    anomalies = list(compress(anomalies, keep)) if not keep.all() else anomalies
    for signal in signals:
        signal_at, signal_entries = _dicts(_get(anomalies, signal))
        if not len(signal_at):
            continue
        for key, period in _period_keys(signal_entries, periods_days):
            entry_at, entries = _dicts(_get(signal_entries, key))
            if not len(entry_at):
                continue
            doc = of_doc[anomalies_at[signal_at[entry_at]]]
            flags = _get(entries, "is_anomaly")
            yield {
                **({"_id": ids[doc]} if ids is not None else {}),
                "coin_id": coin_ids[doc],
                "signal": np.full(len(doc), signal, dtype=object),
                "period_days": np.full(len(doc), period, dtype=np.int64),
                "timestamp": times[doc],
                **{name: _floats(_get(entries, name)) for name in _NUMBERS},
                "is_true": np.fromiter(map(operator.is_, flags, repeat(True)), dtype=bool, count=len(flags)),
                "is_false": np.fromiter(map(operator.is_, flags, repeat(False)), dtype=bool, count=len(flags)),
            }
