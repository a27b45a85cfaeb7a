"""convai_sync.timings.percentile: nearest rank at a fraction, the one both diagnostics() and bench/ use."""

from __future__ import annotations

import math

import pytest

from bench import common
from convai_sync.timings import percentile


def test_nearest_rank_at_a_fraction() -> None:
    values = [0.4, 0.1, 0.3, 0.2]  # unsorted on purpose
    assert [percentile(values, q) for q in (0.0, 0.25, 0.26, 0.5, 0.75, 0.95, 1.0)] == [
        0.1, 0.1, 0.2, 0.2, 0.3, 0.4, 0.4]
    assert percentile([7.0], 0.99) == 7.0
    with pytest.raises(ValueError):
        percentile([], 0.5)


def test_bench_uses_the_same_percentile_and_shows_nothing_measured_as_nan() -> None:
    values = [float(v) for v in range(1, 101)]
    assert [common.percentile(values, q) for q in (0.5, 0.99)] == [percentile(values, 0.5), percentile(values, 0.99)]
    assert math.isnan(common.percentile([], 0.5))
