"""``LiveStats`` / ``LatencyRecord``: percentiles of a whole run in bounded memory."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from imusic.live_loop import LatencyConfig, LatencyRecord, LiveStats


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=-5.0, max_value=3000.0, allow_nan=False), min_size=1,
                max_size=400),
       st.sampled_from([50.0, 95.0, 99.0, 100.0]))
def test_percentiles_match_the_values_to_a_bin(values, q):
    """Each percentile is the value of that rank (numpy's inverted CDF) to within one bin, never
    above the maximum; values past the top count in the overflow bin and the max stays exact."""
    config = LatencyConfig(bin_ms=0.1, max_ms=2000.0, recent=10)
    rec = LatencyRecord(config)
    for v in values:
        rec.add(v)
    exact = float(np.percentile(np.maximum(values, 0.0), q, method="inverted_cdf"))
    got = rec.percentile(q)
    assert rec.max_ms == max(max(values), 0.0)   # a negative value counts as 0
    assert got <= rec.max_ms
    if exact < config.max_ms:
        assert abs(got - exact) <= config.bin_ms, (got, exact)
    else:
        assert got >= config.max_ms or got == rec.max_ms
    assert list(rec.recent) == values[-10:]


def test_memory_does_not_grow_with_the_run():
    """An hour of 60 Hz frames (216 000) leaves the record the size it had after one frame
    (the old lists grew by 3 floats a frame: 21 MB an hour)."""
    stats = LiveStats()
    sizes = []
    rng = np.random.default_rng(0)
    for n in (1, 216_000):
        for v in rng.gamma(4.0, 2.0, n):
            stats.motion_to_output.add(float(v))
        sizes.append((stats.motion_to_output.counts.nbytes, len(stats.motion_to_output.recent)))
    assert sizes[0][0] == sizes[1][0] <= 200_000
    assert sizes[1][1] == LatencyConfig().recent
    s = stats.summary()
    assert 6.0 < s["motion_to_output_p50_ms"] < 8.0     # gamma(4, 2): median ~7.3
    assert s["motion_to_output_p99_ms"] < s["motion_to_output_max_ms"]
    assert np.isnan(s["compute_p50_ms"])                  # nothing counted there
