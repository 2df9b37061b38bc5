"""Episode starts in latest mode against the model's own time on the same message (bar: at most 0.15x).

With alerts on, a latest-mode message also judges the previous step of each
flag from its own window (libs/models/starts.py). This times that step and the
model (``model.judge``) on the same frame, the benchmark's latest-mode message
(bench/dataset.py: 2,000 coins, an observation an hour), in the same run,
interleaved: the median of ``reps`` repetitions of each. Wall clock is the
figure, as for every other ratio here; the CPU-time ratio is printed beside it
because these machines are shared and CPU time drifts less. The bar: with
alerts on, finding the starts should cost a latest-mode message a small
fraction of what judging it costs.

    .venv/bin/python -m bench.episode_starts [--coins N] [--reps N]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from libs.helpers.constants_helper import SIGNALS
from libs.models.model import ModelParams, judge, judged_mask
from libs.models.starts import starting_flags

PERIODS = (3, 7, 30)
LOOKBACK_HOURS = 24
PARAMS = ModelParams(SIGNALS, PERIODS, 1.5, 4)
BAR = 0.15


def _timed(call: Callable[[], Any]) -> tuple[float, float]:
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    call()
    return time.perf_counter() - wall, time.process_time() - cpu


def measure(frame: pd.DataFrame, as_of: datetime, reps: int = 5) -> dict[str, Any]:
    """The figure for one frame: seconds of each (median), their ratios, and what was found."""
    judged = judged_mask(frame, as_of=as_of, since=None, lookback_hours=LOOKBACK_HOURS, coin_ids=None)
    results = judge(frame, judged, PARAMS)
    model, starts = [], []
    for _ in range(reps):
        model.append(_timed(lambda: judge(frame, judged, PARAMS)))
        starts.append(_timed(lambda: starting_flags(frame, PARAMS, results, LOOKBACK_HOURS)))
    model_s, starts_s = (statistics.median(t[0] for t in times) for times in (model, starts))
    model_cpu, starts_cpu = (statistics.median(t[1] for t in times) for times in (model, starts))
    found = starting_flags(frame, PARAMS, results, LOOKBACK_HOURS)
    return {
        "judged_rows": int(judged.sum()),
        "flags": int(results["is_anomaly"].fillna(False).sum()),
        "starts": len(found),
        "model_s": model_s,
        "starts_s": starts_s,
        "ratio": starts_s / model_s,
        "cpu_ratio": starts_cpu / model_cpu,
        "bar": f"<= {BAR}",
    }


def main() -> None:
    from bench.dataset import AS_OF, Shape, documents
    from libs.models.history import documents_to_history

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coins", type=int, default=Shape().coins)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    # 33 days: the 30-day windows of previous steps up to 48 h before as_of are whole
    docs = documents(Shape(coins=args.coins, days=33))
    frame = documents_to_history(docs, SIGNALS, ids_since=AS_OF - timedelta(hours=LOOKBACK_HOURS)).frame
    del docs
    figure = measure(frame, AS_OF, args.reps)
    print(
        f"{args.coins:,} coins, {figure['judged_rows']:,} judged rows, {figure['flags']:,} flags, "
        f"{figure['starts']:,} episode starts: starts {figure['starts_s'] * 1000:.0f} ms vs model "
        f"{figure['model_s'] * 1000:.0f} ms = {figure['ratio']:.3f}x (CPU time {figure['cpu_ratio']:.3f}x; "
        f"bar {figure['bar']})"
    )


if __name__ == "__main__":
    main()
