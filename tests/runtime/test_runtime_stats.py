"""Stage timings: exact percentiles for short runs, bounded memory and unbiased estimates for long ones."""
from __future__ import annotations

import numpy as np
import pytest

from edgedepth.runtime.stats import STAGES, RateMeter, StageTimings, TimingRecorder, format_summary


def test_percentiles_are_exact_while_under_capacity():
    values = np.random.default_rng(0).exponential(0.02, 500)
    recorder = TimingRecorder(capacity=1000)
    for value in values:
        recorder.add(float(value))
    summary = recorder.summary_ms()
    for key, q in (("p50", 50), ("p90", 90), ("p99", 99)):
        assert summary[key] == pytest.approx(np.percentile(values, q) * 1000, abs=1e-3)
    assert summary["count"] == 500 and summary["mean"] == pytest.approx(values.mean() * 1000, abs=1e-3)
    assert summary["max"] == pytest.approx(values.max() * 1000, abs=1e-3)


def test_long_runs_keep_a_fixed_sample_with_unbiased_percentiles():
    recorder = TimingRecorder(capacity=2000)
    values = np.random.default_rng(1).uniform(0.0, 1.0, 100_000)
    for value in values:
        recorder.add(float(value))
    summary = recorder.summary_ms()
    assert recorder._values.size == 2000
    assert summary["count"] == 100_000
    assert summary["p50"] == pytest.approx(500, abs=40) and summary["p90"] == pytest.approx(900, abs=25)
    assert summary["mean"] == pytest.approx(values.mean() * 1000, abs=1e-3)


def test_empty_stage_reports_zeros():
    zeros = {"count": 0, "mean": 0.0, "p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0}
    assert StageTimings(["infer"]).summary_ms() == {"infer": zeros}


def test_rate_meter_measures_frames_per_second():
    meter = RateMeter(window=10)
    rates = [meter.tick(t * 0.1) for t in range(30)]
    assert rates[0] is None and rates[-1] == pytest.approx(10.0)


def test_summary_table_lists_every_stage():
    timings = StageTimings()
    for stage in STAGES:
        timings.add(stage, 0.01)
    table = format_summary(timings.summary_ms())
    assert all(stage in table for stage in STAGES) and "p99 ms" in table
