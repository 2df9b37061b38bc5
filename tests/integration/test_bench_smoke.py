"""Every benchmark still runs: each measurement of ``make bench`` on a tiny dataset, once.

Speed is never asserted here (bench/ measures it, as ratios, on real sizes);
what is checked is that the benchmarks keep up with the code they time, so
``make bench`` does not break unnoticed, and that each reports its figures.
"""

from __future__ import annotations

from datetime import timedelta

from bench import alerts_step, backtest_year, driver_socket, episodes_build
from bench.dataset import AS_OF, Shape, documents
from libs.helpers.constants_helper import SIGNALS
from libs.models.history import documents_to_history


def test_the_alerts_step_benchmarks_run_and_report_their_ratios():
    # given a few coins of the benchmark's dataset, a month and a day of hourly observations
    docs = documents(Shape(coins=4, days=32))
    frame = documents_to_history(docs, SIGNALS, ids_since=AS_OF - timedelta(hours=24)).frame
    # when the quiet and the worst-case figures are measured once
    quiet = alerts_step.measure_quiet(frame, AS_OF, reps=1)
    worst = alerts_step.measure_worst(docs, AS_OF, reps=1)
    # then each has its ratio (the worst case judged every step of every coin's memory on every signal)
    assert quiet["ratio"] > 0 and quiet["judged_rows"] == 4
    assert worst["ratio"] > 0 and worst["documents"] == len(docs)


def test_the_backtest_benchmark_runs_and_reports_its_ratio():
    figure = backtest_year.measure(coins=3, days=40, reps=1)
    assert figure["ratio"] > 0


def test_the_report_and_driver_benchmarks_run_and_report_their_ratios():
    built = episodes_build.measure(episodes_build.EntriesShape(coins=5, days=3), reps=1)
    socket = driver_socket.measure(coins=3, reps=1)
    assert built["ratio"] > 0 and socket["load_vs_decode_all"] > 0
