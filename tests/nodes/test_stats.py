"""The stats report's own arithmetic (the reports themselves are checked end to end in
tests/test_top.py and tests/test_supervision.py)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from pinflow.nodes.stats import percentile


@pytest.mark.parametrize("count", [1, 2, 3, 30, 101])
def test_percentile_is_numpys_default(count: int):
    """Reports compute p50/p99 in plain Python (numpy's calls cost an idle node more than
    the values they sort); the figures must stay those numpy gave."""
    rng = random.Random(count)
    for _ in range(20):
        values = sorted(rng.uniform(0, 50) for _ in range(count))
        for q in (0, 1, 50, 99, 100):
            assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))
