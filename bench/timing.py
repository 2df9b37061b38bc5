"""How the benchmarks time two things against each other: alternately, in the same run, the median of each.

These machines are shared and noisy, so a figure is a ratio of two timings
taken turn about, never a timed assertion.
"""

from __future__ import annotations

import gc
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

#: Repetitions of each timing (``BENCH_REPS``, default 3).
REPS = int(os.environ.get("BENCH_REPS", "3"))


def median_pair(first: Callable[[], Any], second: Callable[[], Any], reps: int = REPS) -> tuple[float, float]:
    """Median wall-clock seconds of two callables, run alternately ``reps`` times each."""
    a: list[float] = []
    b: list[float] = []
    for _ in range(reps):
        for sink, call in ((a, first), (b, second)):
            gc.collect()
            started = time.perf_counter()
            call()
            sink.append(time.perf_counter() - started)
    return statistics.median(a), statistics.median(b)
