"""What judging one signal at a time, each timed and traced (as the processor does), costs against one model call.

The processor calls the model once per signal so that each signal gets its own
X-Ray subsegment and ``ModelMs`` metric, sharing one sort of the frame
(``model.sort_rows``) across signals. This measures both ways on the same
frames in the same run and prints the ratio (best of ``--repeat`` runs each).

    .venv/bin/python -m bench.signal_split [--repeat 3]
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime, timedelta

import numpy as np

from libs.helpers.constants_helper import SIGNALS
from libs.models.history import documents_to_history
from libs.models.model import ModelParams, concat_results, judge, judged_mask, signal_judges, sort_rows
from libs.summary import MessageSummary, signal_step
from libs.tools.synthetic import synthetic_documents

END = datetime(2024, 11, 1)
#: (label, coins, observations per day, days of range mode or None for latest mode)
SCENARIOS = [
    ("latest, 2,000 coins x 6/day x 33 days", 2_000, 6, None),
    ("range 2 days, 100 coins x 24/day x 33 days", 100, 24, 2),
]


def judge_each_signal(frame, judged, params):
    """What the processor does: each signal's judging timed and traced on its own (libs.summary.signal_step)."""
    summary, blocks = MessageSummary("bench"), []
    for signal, judge_one in signal_judges(frame, sort_rows(frame, judged, params.periods_days), params):
        with signal_step(summary, signal):
            blocks.append(judge_one())
    return concat_results(blocks)


def _best_ms(call, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"{'scenario':45} {'rows':>8} {'judged':>7} {'one call ms':>12} {'per signal ms':>14} {'ratio':>6}")
    for label, coins, per_day, range_days in SCENARIOS:
        documents, _ = synthetic_documents(coins=coins, days=33, per_day=per_day, end=END, seed=1)
        frame = documents_to_history(documents, SIGNALS).frame
        since = END - timedelta(days=range_days) if range_days else None
        judged = judged_mask(frame, as_of=END, since=since, lookback_hours=24, coin_ids=None)
        params = ModelParams(SIGNALS, (3, 7, 30), 1.5, 4)
        one = judge(frame, judged, params)
        split = judge_each_signal(frame, judged, params)
        assert np.array_equal(one["is_anomaly"].fillna(False), split["is_anomaly"].fillna(False))
        once_ms = _best_ms(lambda: judge(frame, judged, params), args.repeat)
        split_ms = _best_ms(lambda: judge_each_signal(frame, judged, params), args.repeat)
        print(
            f"{label:45} {len(frame):>8,} {int(judged.sum()):>7,} {once_ms:>12.1f} {split_ms:>14.1f} "
            f"{split_ms / once_ms:>6.2f}"
        )


if __name__ == "__main__":
    main()
