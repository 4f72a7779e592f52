"""``model.runtime.stream_values``: the one place published blendshapes are clipped to 0..1."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from imusic.hardware.vocabulary import N_BLENDSHAPES, N_STREAM_CHANNELS
from imusic.model.runtime import stream_values


@settings(max_examples=200, deadline=None)
@given(arrays(np.float64, N_BLENDSHAPES,
              elements=st.floats(allow_nan=True, allow_infinity=True, width=32)))
def test_any_frame_publishes_61_values_in_range(raw):
    out = np.asarray(stream_values(raw))
    assert out.shape == (N_STREAM_CHANNELS,)
    assert np.all((out >= 0.0) & (out <= 1.0)), out
    inside = np.isfinite(raw) & (raw >= 0) & (raw <= 1)
    assert np.array_equal(out[:N_BLENDSHAPES][inside], raw[inside])   # in range: untouched
    assert np.all(out[:N_BLENDSHAPES][raw < 0] == 0.0)
    assert np.all(out[:N_BLENDSHAPES][raw > 1] == 1.0)
    assert np.all(out[N_BLENDSHAPES:] == 0.0)


def test_the_raw_frame_is_left_as_it_was():
    raw = np.linspace(-0.2, 1.2, N_BLENDSHAPES).astype(np.float32)
    keep = raw.copy()
    out = stream_values(raw)
    assert np.array_equal(raw, keep)                  # evaluation still sees the raw output
    assert out[0] == 0.0 and out[N_BLENDSHAPES - 1] == 1.0


def test_a_wrong_length_is_refused():
    import pytest

    with pytest.raises(ValueError, match="52 blendshapes"):
        stream_values(np.zeros(10))
