"""Turning score documents into the model's history frame.

The frame is what every read backend hands the model, so that the model sees
identical data whichever way it was read. Classifying junk values happens here,
once: a signal value is a number only if it is an int (not a bool), a float or
a Decimal128 and is finite (contract §2); anything else becomes NaN, which
the model treats as missing.

Values the driver could not decode into Python arrive as what pymongo's
decoding options make of them (``mongodb_helper.READ_CODEC_OPTIONS``): a date
beyond year 9999 as ``bson.DatetimeMS`` and a string that is not valid UTF-8
with its bad bytes as lone surrogates. As a signal either is not a number, so
it is missing; as a ``timestamp`` a ``DatetimeMS`` is not a date and as a
``coin_id`` or ``_id`` such a string is not usable, so the document is skipped
and counted (an ``_id`` that cannot be encoded again could never be written).

How it stays fast and small (bench/, "Loading" and "Memory"): documents are
consumed in chunks, so a cursor is never held in memory whole; each field is
pulled out of a chunk with one C-level ``map(dict.get, …)`` pass, and only the
few values that are not plain floats take the Python path of
:func:`as_number`. Coin ids become codes into one shared string per coin, and
``_id`` is kept only for rows that can be judged (``ids_since``): an
``ObjectId`` costs about 100 bytes and a long history holds millions of them.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import islice, repeat
from typing import Any

import numpy as np
import pandas as pd

from libs.jsonvalues import is_unicode_text
from libs.models.frames import empty_frame

try:  # bson ships with pymongo; the model itself does not need it.
    from bson.decimal128 import Decimal128
except ImportError:  # pragma: no cover - pymongo is a run-time requirement
    Decimal128 = None  # type: ignore[assignment,misc]

#: The frame's dtype for timestamps: MongoDB keeps milliseconds.
TIMESTAMP_DTYPE = "datetime64[ms]"

#: Documents converted at a time: large enough for numpy to pay off, small enough to keep lists short
#: (the report's reader of stored entries takes the same chunks).
CHUNK_SIZE = 32_768


@dataclass(frozen=True)
class History:
    """Usable documents as a frame, and how many were skipped.

    ``frame`` has the columns ``_id``, ``coin_id``, ``timestamp`` (naive UTC,
    ``datetime64[ms]``) and one float column per requested signal (NaN where
    missing), sorted by ``coin_id`` then ``timestamp`` (ties keep their read
    order) with a fresh ``RangeIndex``. ``_id`` is None on rows stamped before
    the loader's ``ids_since`` (rows that cannot be judged).
    """

    frame: pd.DataFrame
    read: int
    skipped: int


def as_number(value: Any) -> float:
    """A signal value as a float, or NaN when contract §2 calls it missing."""
    if isinstance(value, bool):
        return math.nan
    if isinstance(value, float):
        return value if math.isfinite(value) else math.nan
    if isinstance(value, int):
        try:
            number = float(value)
        except OverflowError:
            return math.nan
        return number if math.isfinite(number) else math.nan
    if Decimal128 is not None and isinstance(value, Decimal128):
        return decimal128_to_float(value)
    return math.nan


def decimal128_to_float(value: Any) -> float:
    """``float(value.to_decimal())`` (NaN for NaN, ±inf or out of range), ten times faster.

    Decodes the IEEE 754-2008 BID layout the way bson's ``to_decimal`` does,
    then divides integers: Python's int true division is correctly rounded, as
    is ``float(Decimal)``, so the two agree to the bit.
    """
    bits = int.from_bytes(value.bid, "little")
    high = bits >> 64
    if high & _DECIMAL_INF == _DECIMAL_INF:  # NaN, sNaN, ±inf
        return math.nan
    coefficient = bits & _DECIMAL_COEFFICIENT
    if high & _DECIMAL_TWO_BIT_FORM == _DECIMAL_TWO_BIT_FORM or coefficient > _DECIMAL_MAX_COEFFICIENT:
        # Non-canonical encodings are rare: bson's own reading (signed zero, or rounding) is the contract.
        try:
            number = float(value.to_decimal())
        except (ArithmeticError, ValueError):
            return math.nan
        return number if math.isfinite(number) else math.nan
    exponent = ((high >> 49) & 0x3FFF) - _DECIMAL_BIAS
    try:
        number = float(coefficient * 10**exponent) if exponent >= 0 else coefficient / 10**-exponent
    except OverflowError:
        return math.nan
    return -number if high >> 63 else number


_DECIMAL_INF = 0x7800000000000000
_DECIMAL_TWO_BIT_FORM = 3 << 61
_DECIMAL_BIAS = 6176
_DECIMAL_COEFFICIENT = (1 << 113) - 1
_DECIMAL_MAX_COEFFICIENT = 10**34 - 1


def empty_history(signals: Sequence[str]) -> pd.DataFrame:
    """A history frame with no rows and the right columns and dtypes."""
    return empty_frame(
        {"_id": object, "coin_id": object, "timestamp": TIMESTAMP_DTYPE, **dict.fromkeys(signals, np.float64)}
    )


def documents_to_history(
    documents: Iterable[dict[str, Any]], signals: Sequence[str], *, ids_since: datetime | None = None
) -> History:
    """Build the model's frame from documents as pymongo returns them.

    ``documents`` may be a list or any iterable (a cursor): it is consumed
    :data:`CHUNK_SIZE` documents at a time and never held whole. Documents
    without a non-empty string ``coin_id`` or a date ``timestamp`` are skipped
    and counted. ``_id`` is kept on rows stamped at or after ``ids_since``
    (naive UTC; every row when None) and is None on the others.
    """
    builder = _FrameBuilder(signals, ids_since)
    for chunk in chunks(documents, CHUNK_SIZE):
        builder.add(chunk)
    return builder.finish()


def chunks(documents: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    """``documents`` as lists of at most ``size``: a list is sliced, any other iterable (a cursor) read as it comes."""
    if isinstance(documents, list):
        for start in range(0, len(documents), size):
            yield documents[start : start + size]
        return
    iterator = iter(documents)
    while chunk := list(islice(iterator, size)):
        yield chunk


def usable_coin_id(value: Any) -> bool:
    """A non-empty string that the driver could decode (contract §2)."""
    return isinstance(value, str) and value != "" and is_unicode_text(value)


def _encodable_ids(ids: list[Any]) -> np.ndarray | bool:
    """False where an ``_id`` is a string the driver could not decode (it could not be written back).

    Almost every collection keys by ObjectId: one C-level pass over the types settles it.
    """
    if str not in set(map(type, ids)):
        return True
    strings = np.flatnonzero(np.fromiter(map(isinstance, ids, repeat(str)), dtype=bool, count=len(ids)))
    texts = [ids[i] for i in strings.tolist()]
    ascii_ = np.fromiter(map(str.isascii, texts), dtype=bool, count=len(texts))
    encodable = np.ones(len(ids), dtype=bool)
    for k in np.flatnonzero(~ascii_).tolist():  # only the non-ASCII strings take the Python path
        encodable[strings[k]] = is_unicode_text(texts[k])
    return encodable


def _field(chunk: list[dict[str, Any]], name: str) -> list[Any]:
    return list(map(dict.get, chunk, repeat(name)))


def _objects(values: list[Any]) -> np.ndarray:
    # np.array would read a list-valued entry as another dimension; fromiter takes each entry as it is.
    return np.fromiter(values, dtype=object, count=len(values))


#: A NaN with a payload no arithmetic produces: what a value without ``.real`` (not a number) becomes.
_NOT_A_NUMBER = struct.unpack("<d", struct.pack("<Q", 0x7FF8_5EB7_1E5C_0DE5))[0]
_NOT_A_NUMBER_BITS = np.float64(_NOT_A_NUMBER).view(np.int64)


def _signal_column(values: list[Any]) -> np.ndarray:
    """Float64 values, NaN wherever contract §2 calls the value missing.

    One C-level pass converts ``value.real``: floats and ints (the numbers)
    have it, and every other type pymongo decodes (None, str, dict, list,
    datetime, ObjectId, Decimal128, ...) falls back to a marked NaN. Only the
    marked cells, and the 0.0/1.0 cells that may be booleans (which have
    ``.real`` too), are then looked at one by one.
    """
    try:
        column = np.fromiter(map(getattr, values, repeat("real"), repeat(_NOT_A_NUMBER)), np.float64, len(values))
    except (OverflowError, TypeError, ValueError):  # an int beyond float range, or an odd ``.real``
        return np.array([as_number(v) for v in values], dtype=np.float64)
    marked = np.flatnonzero(column.view(np.int64) == _NOT_A_NUMBER_BITS)
    for i, value in _picked(values, marked):
        if Decimal128 is not None and isinstance(value, Decimal128):
            column[i] = decimal128_to_float(value)
    for i, value in _picked(values, np.flatnonzero((column == 0.0) | (column == 1.0))):
        if isinstance(value, bool):
            column[i] = np.nan
    column[~np.isfinite(column)] = np.nan  # the marked NaNs, real NaNs, ±inf
    return column


def _picked(values: list[Any], positions: np.ndarray) -> Iterator[tuple[int, Any]]:
    """``(i, values[i])`` for the given positions, skipping the common types in C."""
    if len(positions) == 0:
        return iter(())
    items = [values[i] for i in positions.tolist()]
    common = np.fromiter(map(isinstance, items, repeat((float, str, type(None)))), dtype=bool, count=len(items))
    keep = np.flatnonzero(~common)
    return zip(positions[keep].tolist(), [items[k] for k in keep.tolist()])


def _timestamps_ms(values: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Milliseconds since the epoch (UTC) of the dates among ``values``, and which values are dates."""
    if set(map(type, values)) == {datetime}:
        dated = np.ones(len(values), dtype=bool)
    else:
        dated = np.fromiter(map(isinstance, values, repeat(datetime)), dtype=bool, count=len(values))
    dates = _objects(values)[dated]
    ticks = np.zeros(len(values), dtype=np.int64)
    if len(dates):
        # Naive datetimes are UTC (pymongo's tz_aware=False), aware ones are converted; floored to BSON's ms.
        ticks[dated] = pd.to_datetime(dates, utc=True).as_unit("us").asi8 // 1000
    return ticks, dated


def _epoch_ms(moment: datetime) -> int:
    return int(pd.to_datetime(np.array([moment], dtype=object), utc=True).as_unit("us").asi8[0] // 1000)


def _is_sorted(codes: np.ndarray, ticks: np.ndarray, block: int = 1 << 20) -> bool:
    """Whether rows are ordered by (code, tick); checked a block at a time to keep temporaries small."""
    for start in range(0, max(len(codes) - 1, 0), block):
        end = min(start + block, len(codes) - 1)
        step = codes[start + 1 : end + 1] - codes[start:end]
        if not np.all((step > 0) | ((step == 0) & (ticks[start + 1 : end + 1] >= ticks[start:end]))):
            return False
    return True


class _Column:
    """A 1-D array that grows in place (``ndarray.resize`` reallocates; large blocks are remapped, not copied)."""

    def __init__(self, dtype: Any) -> None:
        self.data = np.empty(1 << 16, dtype=dtype)
        self.size = 0

    def extend(self, values: np.ndarray) -> None:
        end = self.size + len(values)
        if end > len(self.data):
            self.data.resize(max(end, 2 * len(self.data)), refcheck=False)
        self.data[self.size : end] = values
        self.size = end

    def finish(self) -> np.ndarray:
        self.data.resize(self.size, refcheck=False)
        return self.data


class _FrameBuilder:
    """Converts chunks as they come into growing columns; :meth:`finish` assembles the sorted frame."""

    def __init__(self, signals: Sequence[str], ids_since: datetime | None) -> None:
        self.signals = tuple(signals)
        self.ids_since_ms = None if ids_since is None else _epoch_ms(ids_since)
        self.coin_codes: dict[str, int] = {}
        self.read = 0
        self.codes = _Column(np.int32)
        self.ticks = _Column(np.int64)
        self.values = [_Column(np.float64) for _ in self.signals]
        self.ids: list[tuple[np.ndarray, np.ndarray]] = []  # (row numbers, ids): only rows that can be judged

    def add(self, chunk: list[dict[str, Any]]) -> None:
        first_row = self.codes.size
        self.read += len(chunk)
        codes = self._coin_codes(_field(chunk, "coin_id"))
        ticks, dated = _timestamps_ms(_field(chunk, "timestamp"))
        ids = _field(chunk, "_id")
        usable = dated & (codes >= 0) & _encodable_ids(ids)
        rows = None if usable.all() else np.flatnonzero(usable)  # positions in the chunk, None for all
        if rows is not None:
            codes, ticks = codes[rows], ticks[rows]
        self.codes.extend(codes)
        self.ticks.extend(ticks)
        with_id = np.arange(len(ticks)) if self.ids_since_ms is None else np.flatnonzero(ticks >= self.ids_since_ms)
        if len(with_id):
            source = with_id if rows is None else rows[with_id]
            kept = _objects(ids) if len(source) == len(chunk) else _objects([ids[i] for i in source.tolist()])
            self.ids.append((first_row + with_id, kept))
        for column, signal in zip(self.values, self.signals):
            values = _signal_column(_field(chunk, signal))
            column.extend(values if rows is None else values[rows])

    def _coin_codes(self, coin_ids: list[Any]) -> np.ndarray:
        """Codes into ``self.coin_codes`` (first-seen order), −1 for an unusable id."""
        try:
            local, uniques = pd.factorize(_objects(coin_ids))  # None and NaN get −1
        except TypeError:  # an unhashable id (a dict, a list): not a string anyway
            local, uniques = pd.factorize(_objects([c if isinstance(c, str) else None for c in coin_ids]))
        lookup = [self._code(u) for u in uniques.tolist()]
        return np.array(lookup + [-1], dtype=np.int32)[local]  # local −1 picks the trailing −1

    def _code(self, coin_id: Any) -> int:
        code = self.coin_codes.get(coin_id) if isinstance(coin_id, str) else None
        if code is None:
            if not usable_coin_id(coin_id):
                return -1
            code = self.coin_codes[coin_id] = len(self.coin_codes)
        return code

    def finish(self) -> History:
        count = self.codes.size
        skipped = self.read - count
        if count == 0:
            return History(empty_history(self.signals), read=self.read, skipped=skipped)
        names = np.array(list(self.coin_codes), dtype=object)
        by_name = np.argsort(names)
        rank = np.empty(len(names), dtype=np.int32)
        rank[by_name] = np.arange(len(names), dtype=np.int32)
        codes = self.codes.finish()
        np.take(rank, codes, out=codes)  # renumbered in coin_id order, in place
        ticks = self.ticks.finish()
        ids = np.full(count, None, dtype=object)
        for rows, values in self.ids:
            ids[rows] = values
        columns = {signal: column.finish() for signal, column in zip(self.signals, self.values)}
        if not _is_sorted(codes, ticks):
            order = np.lexsort((ticks, codes))
            codes, ticks, ids = codes[order], ticks[order], ids[order]
            columns = {signal: values[order] for signal, values in columns.items()}
        frame = pd.DataFrame(columns, copy=False)
        frame.insert(0, "_id", ids)
        frame.insert(1, "coin_id", names[by_name][codes])
        frame.insert(2, "timestamp", ticks.view(TIMESTAMP_DTYPE))
        return History(frame, read=self.read, skipped=skipped)
