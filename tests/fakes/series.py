"""Score documents for the episode-start and alert tests: hand-made series and random ones (Hypothesis)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId
from hypothesis import strategies as st

T0 = datetime(2024, 10, 1)


def doc(coin: str, hour: float, **signals: Any) -> dict[str, Any]:
    """One score document stamped ``hour`` hours after :data:`T0`."""
    return {"_id": ObjectId(), "coin_id": coin, "timestamp": T0 + timedelta(hours=hour), **signals}


def series(coin: str, values: list[tuple[float, Any]], signal: str = "volume") -> list[dict[str, Any]]:
    """Documents of one coin, one signal: ``(hour, value)`` pairs (None leaves the value absent)."""
    return [doc(coin, hour, **({} if value is None else {signal: value})) for hour, value in values]


def calm(hours: range, base: float = 10.0) -> list[tuple[float, float]]:
    """An ordinary stretch: values cycling through base, base+1, base+2, base+3."""
    return [(hour, base + hour % 4) for hour in hours]


_CALM = st.sampled_from([10.0, 11.0, 12.0, 13.0])
_ODD = st.one_of(
    st.sampled_from([100.0, 200.0, -50.0, 5.0]),
    st.sampled_from([100.0, 200.0, -50.0, 5.0]),
    st.sampled_from([100.0, 200.0, -50.0, 5.0]),
    _CALM,
    st.floats(min_value=-100, max_value=200, allow_nan=False),
    st.sampled_from([None, float("nan"), "n/a", True]),
)
_VALUES = st.one_of(_CALM, _CALM, _ODD)


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[dict[str, Any]], int]:
    """A few coins on an hourly grid (repeated hours make ties), two signals, junk values; and an as-of hour.

    Each coin ends with a few odd values (spikes, dips, flat stretches, gaps) in
    the day before the as-of hour, so flags that start an episode and flags
    that continue one are both common.
    """
    as_of = draw(st.integers(20, 62))
    documents = []
    for coin in draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=3, unique=True)):
        flat = draw(st.booleans())
        hours = draw(st.lists(st.integers(0, 60), min_size=1, max_size=40))
        near = [as_of, as_of, as_of - 1, as_of - 2, as_of - 3, as_of - 23, as_of - 24, as_of - 25]
        tail = draw(st.lists(st.sampled_from(near), max_size=6))
        for hour in hours:
            values = {name: 5.0 if flat else draw(_VALUES) for name in ("volume", "latest_price")}
            documents.append(doc(coin, hour, **{k: v for k, v in values.items() if v is not None}))
        for hour in tail:
            values = {name: draw(_ODD) for name in ("volume", "latest_price")}
            documents.append(doc(coin, hour, **{k: v for k, v in values.items() if v is not None}))
    return documents, as_of


_MARKET_ODD = st.sampled_from([100.0, 200.0, 5.0, 0.5, 13.5, 9.5, -1.0, None])


@st.composite
def markets(draw: st.DrawFn, signals: tuple[str, ...] = ("volume", "latest_price")) -> tuple[list[dict[str, Any]], int]:
    """Hourly coins on the hour grid, calm for 20 hours, then with gaps, repeated hours and frequent odd values
    (spikes, dips, near misses, a missing value): many alerts. Returns the documents and the last hour."""
    end = draw(st.integers(30, 60))
    documents = []
    for coin in draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=3, unique=True)):
        for hour in range(end + 1):
            for _ in range(draw(st.sampled_from([1, 1, 1, 1, 0, 2]))):
                values = {
                    name: draw(
                        st.one_of(st.sampled_from([10.0, 11.0, 12.0, 13.0]), _MARKET_ODD)
                        if hour > 20
                        else st.just(10.0 + hour % 4)
                    )
                    for name in signals
                }
                documents.append(doc(coin, hour, **{k: v for k, v in values.items() if v is not None}))
    return documents, end
