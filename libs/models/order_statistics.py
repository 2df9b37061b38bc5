"""Exact order statistics of many overlapping windows: the range-mode engine.

A backfill judges every observation of a week, and each one's window shares
all but a value or two with its neighbour's. Gathering and sorting every
window (what :func:`libs.models.model.window_quartiles` does, and the right
thing for a handful of windows) then costs ``Σ n log n`` for the same values
again and again: 336,000 windows of up to 720 values for a 2,000-coin week.

Here each group's values (one coin's) are ranked once, and a *wavelet matrix*
over those ranks answers "the k-th smallest value in positions [lo, hi)" for
all windows at once, in ``log2(largest group)`` vectorised steps whatever the
window's length (Claude, Navarro & Ordóñez, "The wavelet matrix", SPIRE 2012).
The k-th smallest values are then interpolated exactly as numpy does, so the
quartiles equal ``np.percentile`` to the bit, like the gathering path.
"""

from __future__ import annotations

import numpy as np

#: Queries answered per vectorised pass; bounds the temporaries (about 40 bytes a query).
QUERY_CHUNK = 1 << 20


def quantile_positions(counts: np.ndarray, q: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """numpy's 'linear' method: the two order statistics a window's ``q`` quantile lies between, and the weight.

    Returns ``below``, ``above`` (0-based, ``above = min(below + 1, n − 1)``)
    and ``gamma``, computed as ``np.percentile`` computes them.
    """
    virtual = (counts - 1) * q
    previous = np.floor(virtual)
    gamma = virtual - previous
    below = previous.astype(np.intp)
    return below, np.minimum(below + 1, counts - 1), gamma


def lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """numpy's ``_lerp`` exactly: ``a + (b−a)·t``, but ``b − (b−a)·(1−t)`` where ``t ≥ 0.5``.

    Except where ``b − a`` overflows (values of both signs beyond ±9e307): numpy
    then answers ±inf or NaN for a quartile of finite values; ``a·(1−t) + b·t``
    cannot overflow and gives the finite quartile instead.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        diff = b - a
        out = a + diff * t
        np.subtract(b, diff * (1 - t), out=out, where=t >= 0.5)
    overflowed = np.isinf(diff)
    if overflowed.any():
        out[overflowed] = a[overflowed] * (1 - t[overflowed]) + b[overflowed] * t[overflowed]
    return out


class WaveletMatrix:
    """Range k-th smallest over a sequence of small non-negative integers.

    Level ``j`` holds, for the sequence stably partitioned by its higher bits,
    the running count of ones in bit ``bits − 1 − j``; a query follows its
    range down the levels, going to the ones' side when more than ``k``
    zeros cannot hold the answer.
    """

    def __init__(self, sequence: np.ndarray, bits: int) -> None:
        n = len(sequence)
        self.bits = bits
        self.ones: list[np.ndarray] = []
        self.zeros: list[int] = []
        current = sequence.astype(np.int32)
        position = np.arange(n, dtype=np.int32)
        for bit in range(bits - 1, -1, -1):
            is_one = ((current >> bit) & 1).astype(bool)
            ones = np.zeros(n + 1, dtype=np.int32)
            np.cumsum(is_one, out=ones[1:])
            zeros = n - int(ones[-1])
            self.ones.append(ones)
            self.zeros.append(zeros)
            destination = np.where(is_one, zeros + ones[:-1], position - ones[:-1])
            partitioned = np.empty_like(current)
            partitioned[destination] = current
            current = partitioned

    def kth_smallest(self, lo: np.ndarray, hi: np.ndarray, k: np.ndarray) -> np.ndarray:
        """The ``k[i]``-th smallest (0-based) of ``sequence[lo[i]:hi[i]]`` for every i (``k < hi − lo``).

        Branch-free and in place: each level is the same few whole-array integer
        operations into buffers allocated once, the side a query follows chosen
        by multiplying with 0 or 1 (a masked ``where=`` or ``np.where`` costs
        more than the arithmetic it saves); about twice as fast as selecting.
        """
        lo, hi, k = lo.astype(np.int32), hi.astype(np.int32), k.astype(np.int32)
        found = np.zeros(len(lo), dtype=np.int32)
        ones_lo, ones_hi, inside, step = (np.empty_like(lo) for _ in range(4))
        right = np.empty(len(lo), dtype=bool)
        taken = right.view(np.int8)  # 1 where the query follows the ones, else 0
        for level, bit in enumerate(range(self.bits - 1, -1, -1)):
            ones, zeros = self.ones[level], self.zeros[level]
            np.take(ones, lo, out=ones_lo)
            np.take(ones, hi, out=ones_hi)
            np.subtract(lo, ones_lo, out=lo)  # the range among the zeros ...
            np.subtract(hi, ones_hi, out=hi)
            np.subtract(hi, lo, out=inside)  # ... holds this many
            np.greater_equal(k, inside, out=right)  # too few for the k-th: its bit is one
            np.multiply(inside, taken, out=step)
            np.subtract(k, step, out=k)
            for bound, ones_at in ((lo, ones_lo), (hi, ones_hi)):  # bound += taken · (zeros + ones_at − bound)
                np.add(ones_at, zeros, out=step)
                np.subtract(step, bound, out=step)
                np.multiply(step, taken, out=step)
                np.add(bound, step, out=bound)
            np.multiply(taken, np.int32(1 << bit), out=step)
            np.bitwise_or(found, step, out=found)
        return found


def ranked_window_quartiles(
    values: np.ndarray, groups: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """25th and 75th percentiles of ``values[lo[i]:hi[i]]`` for every i, bit-equal to ``np.percentile``.

    ``groups`` (non-decreasing, one entry per value) says which coin a value
    belongs to; no window may cross from one group into another, and none may
    be empty.
    """
    q1 = np.empty(len(lo), dtype=np.float64)
    q3 = np.empty(len(lo), dtype=np.float64)
    if len(lo) == 0:
        return q1, q3
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    sizes = np.diff(np.r_[starts, len(values)])
    group_of = np.repeat(np.arange(len(starts)), sizes)
    # rank within the group: sort by value, then (stably) by group
    by_value = np.argsort(values)  # ties may land in any order: equal values, equal statistics
    small = np.int16 if len(starts) <= np.iinfo(np.int16).max else np.int32
    by_group = by_value[np.argsort(group_of[by_value].astype(small), kind="stable")]
    ranks = np.empty(len(values), dtype=np.int32)
    ranks[by_group] = np.arange(len(values)) - np.repeat(starts, sizes)
    ordered = values[by_group]
    matrix = WaveletMatrix(ranks, max(1, int(sizes.max() - 1).bit_length()))
    for begin in range(0, len(lo), QUERY_CHUNK // 4):
        part = slice(begin, begin + QUERY_CHUNK // 4)
        window_lo, window_hi = lo[part], hi[part]
        base = starts[group_of[window_lo]]
        counts = window_hi - window_lo
        for q, out in ((0.25, q1), (0.75, q3)):
            below, above, gamma = quantile_positions(counts, q)
            low = ordered[base + matrix.kth_smallest(window_lo, window_hi, below)]
            high = ordered[base + matrix.kth_smallest(window_lo, window_hi, above)]
            out[part] = lerp(low, high, gamma)
    return q1, q3
