"""One-line charts the asset pages show inline."""

from __future__ import annotations

import numpy as np

from alstm_pipeline.evaluation.sparklines import BLOCKS, described, sparkline


def test_lowest_to_highest_maps_to_the_lowest_to_highest_block():
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == BLOCKS
    assert sparkline([3, 3, 3]) == "▄▄▄"  # a flat series sits mid-height
    assert sparkline([np.nan, 1.0, np.nan, 2.0]) == "▁█"  # missing values are left out
    assert sparkline([]) == ""


def test_a_long_series_is_averaged_into_the_width():
    rising = np.arange(1000, dtype=float)
    line = sparkline(rising, width=32)
    assert len(line) == 32 and line[0] == "▁" and line[-1] == "█"
    assert list(line) == sorted(line, key=BLOCKS.index)  # still monotone


def test_described_gives_first_last_range_and_count():
    text = described([1.0, 3.0, 2.0], digits=2)
    assert text.startswith("+1.00 → +2.00 (min +1.00, max +3.00; 3 points) ")
    assert text.endswith("▁█▅")
    assert described([np.nan]) == "no values"
