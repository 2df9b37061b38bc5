"""The model's order-statistics engines against plain np.percentile over explicit windows."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from libs.models import model
from libs.models.model import ModelParams, judge, select_range, window_quartiles
from libs.models.order_statistics import WaveletMatrix, ranked_window_quartiles


def _grouped_windows(rng: np.random.Generator, groups: int, max_size: int, ties: bool):
    sizes = rng.integers(1, max_size + 1, groups)
    values = rng.integers(0, 5, sizes.sum()).astype(float) if ties else rng.normal(0, 1e6, sizes.sum())
    group_of = np.repeat(np.arange(groups), sizes)
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    lo, hi = [], []
    for start, size in zip(starts, sizes):
        for _ in range(5):
            a, b = sorted(rng.integers(0, size + 1, 2))
            if b > a:
                lo.append(start + a)
                hi.append(start + b)
    return values, group_of, np.array(lo), np.array(hi)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_ranked_quartiles_equal_numpy_percentile_bit_for_bit(seed, ties):
    # given groups of random sizes (some of one value) and windows inside each group
    values, groups, lo, hi = _grouped_windows(np.random.default_rng(seed), groups=30, max_size=70, ties=ties)

    # when the ranked engine takes all windows at once
    q1, q3 = ranked_window_quartiles(values, groups, lo, hi)

    # then each window's quartiles are exactly numpy's
    expected = np.array([np.percentile(values[a:b], [25, 75]) for a, b in zip(lo, hi)])
    assert np.array_equal(q1, expected[:, 0]) and np.array_equal(q3, expected[:, 1])
    # and the gathering engine agrees, to the bit
    g1, g3 = window_quartiles(values, lo, hi)
    assert np.array_equal(q1, g1) and np.array_equal(q3, g3)


def test_wavelet_matrix_answers_every_rank_of_every_range():
    rng = np.random.default_rng(9)
    sequence = rng.integers(0, 37, 200)
    matrix = WaveletMatrix(sequence, bits=6)
    lo, hi = np.array([3, 0, 150, 199]), np.array([90, 200, 151, 200])
    for a, b in zip(lo, hi):
        ranks = np.arange(b - a)
        got = matrix.kth_smallest(np.full(len(ranks), a), np.full(len(ranks), b), ranks)
        assert got.tolist() == sorted(sequence[a:b].tolist())


def _backfill_frame(coins: int = 6, hours: int = 24 * 12) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    end = datetime(2024, 11, 1)
    stamps = np.array([end - timedelta(hours=h) for h in range(hours)][::-1], dtype="datetime64[ms]")
    frame = pd.DataFrame(
        {
            "coin_id": np.repeat([f"c{i}" for i in range(coins)], hours),
            "timestamp": np.tile(stamps, coins),
            "volume": rng.lognormal(0, 1, coins * hours),
        }
    )
    frame.loc[rng.random(len(frame)) < 0.1, "volume"] = np.nan
    return frame.sample(frac=1, random_state=1).reset_index(drop=True)  # the model must not rely on order


def test_both_engines_judge_a_backfill_identically(monkeypatch):
    # given a shuffled frame and a 5-day backfill
    frame = _backfill_frame()
    judged = select_range(frame, datetime(2024, 10, 27), datetime(2024, 11, 1))
    params = ModelParams(("volume",), (1, 3, 7), 1.5, 4)

    # when the model runs once with each engine
    monkeypatch.setattr(model, "_ranking_pays", lambda cells, windows, values: True)
    ranked = judge(frame, judged, params)
    monkeypatch.setattr(model, "_ranking_pays", lambda cells, windows, values: False)
    gathered = judge(frame, judged, params)

    # then the results are identical, and equal numpy over explicitly built windows
    pd.testing.assert_frame_equal(ranked, gathered, check_exact=True)
    for _, result in ranked.sample(40, random_state=2).iterrows():
        row = frame.iloc[int(result["row"])]
        window = (
            frame[
                (frame["coin_id"] == row["coin_id"])
                & (frame["timestamp"] > row["timestamp"] - pd.Timedelta(days=int(result["period_days"])))
                & (frame["timestamp"] <= row["timestamp"])
            ]["volume"]
            .dropna()
            .to_numpy()
        )
        assert result["n"] == len(window)
        if len(window) >= 4:
            assert (result["q1"], result["q3"]) == tuple(np.percentile(window, [25, 75]))


def test_a_long_backfill_takes_the_ranked_engine_and_a_latest_run_does_not():
    assert model._ranking_pays(cells=336_000 * 960, windows=1_000_000, values=1_440_000)
    assert not model._ranking_pays(cells=2_000 * 960, windows=6_000, values=1_440_000)
