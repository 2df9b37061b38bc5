"""The plot: a real PNG, opened and looked at."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest
from matplotlib.image import imread

import handler
from libs.tools.plot import DPI, FIGURE_INCHES, plot_signal
from libs.tools.synthetic import synthetic_documents
from tests.fakes.reference import stored_flag
from tests.fakes.sqs import sqs_event

END = datetime(2024, 11, 1)


@pytest.fixture
def seeded(store):
    documents, planted = synthetic_documents(coins=3, days=32, per_day=4, end=END, seed=4)
    store.insert_many(documents)
    return store, planted[0]


def red_pixels(image: np.ndarray) -> int:
    """Pixels of the flag colour (#d62728), give or take anti-aliasing."""
    red, green, blue = image[..., 0], image[..., 1], image[..., 2]
    return int(((red > 0.75) & (green < 0.25) & (blue < 0.25)).sum())


def plot(store, plant, tmp_path):
    return plot_signal(
        store,
        coin_id=plant.coin_id,
        signal=plant.signal,
        period_days=7,
        out=tmp_path / "plot.png",
        deviation_limit=1.5,
        min_observations=4,
    )


def test_the_png_has_the_figure_size_is_not_blank_and_marks_the_written_flags(seeded, tmp_path, lambda_context):
    # given a backfill that wrote flags for a coin with a planted anomaly
    store, plant = seeded
    body = {"coin_ids": [plant.coin_id], "since": (END - timedelta(days=7)).isoformat(), "as_of": END.isoformat()}
    assert handler.handler(sqs_event(body), lambda_context) == {"batchItemFailures": []}
    written = sum(stored_flag(doc, plant.signal, 7) for doc in store.find({"coin_id": plant.coin_id}))
    assert written > 0

    # when the planted signal is plotted with the 7-day fences
    summary = plot(store, plant, tmp_path)

    # then the PNG has the figure's size in pixels, is not blank, and has red marks for the flags in the store
    image = imread(summary.path)
    assert image.shape[:2] == (FIGURE_INCHES[1] * DPI, FIGURE_INCHES[0] * DPI)
    assert image[..., :3].std() > 0.05
    assert summary.flagged == written and summary.points == store.count_documents({"coin_id": plant.coin_id})
    assert red_pixels(image) > 20 * written


def test_without_written_flags_nothing_is_marked(seeded, tmp_path):
    store, plant = seeded

    summary = plot(store, plant, tmp_path)

    image = imread(summary.path)
    assert summary.flagged == 0 and red_pixels(image) == 0
    assert image[..., :3].std() > 0.05


def test_an_unknown_coin_is_named_in_the_error(seeded, tmp_path):
    store, _ = seeded

    with pytest.raises(ValueError, match="no observations of coin 'nope'"):
        plot_signal(
            store,
            coin_id="nope",
            signal="volume",
            period_days=7,
            out=tmp_path / "x.png",
            deviation_limit=1.5,
            min_observations=4,
        )
    assert not (tmp_path / "x.png").exists()
