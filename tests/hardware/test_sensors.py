"""Sensor parts, quantisation to counts, the error model's pieces and the device clock."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from imusic.hardware.sensors import (
    DeviceClock,
    ErrorModel,
    corrupt,
    from_counts,
    load_parts,
    part_spec,
    to_counts,
)


def test_parts_carry_datasheet_figures_and_citations():
    parts = load_parts()
    assert {"QMI8658C", "QMC5883P", "BMI270"} <= set(parts)
    for part in parts.values():
        assert part.citation and part.maker
        for q in part.quantities:
            spec = part.spec(q)
            assert spec.adc_bits == 16
            assert spec.default_range in spec.ranges
            assert spec.white_std(100.0) > 0
    # QMI8658C gyro: 15 mdps/sqrt(Hz); accel 200 ug/sqrt(Hz) (datasheet Rev 0.8)
    g = parts["QMI8658C"].spec("gyro")
    assert g.noise_density == pytest.approx(math.radians(0.015))
    a = parts["QMI8658C"].spec("acc")
    assert a.noise_density == pytest.approx(200e-6 * 9.80665)
    # QMC5883P +-8 G: one count is 16 G / 65536 = 0.0244 uT * 100
    m = parts["QMC5883P"].spec("mag")
    assert m.scale(8) == pytest.approx(8 * 100 / 32768)


def test_part_spec_picks_the_part_that_measures_the_quantity():
    assert part_spec("QMI8658C+QMC5883P", "mag").unit == "gauss"
    assert part_spec("BMI270+QMC5883P", "gyro").ranges[0] == 125
    with pytest.raises(KeyError):
        part_spec("QMI8658C", "mag")
    with pytest.raises(ValueError, match="range 3 g not available"):
        part_spec("QMI8658C", "acc").full_scale(3)


@settings(max_examples=200, deadline=None)
@given(values=hnp.arrays(np.float64, st.tuples(st.integers(1, 20), st.just(3)),
                         elements=st.floats(-1e4, 1e4)),
       scale=st.floats(1e-4, 1.0))
def test_counts_round_trip_within_half_a_count_and_saturate(values, scale):
    counts = to_counts(values, scale)
    assert counts.dtype == np.int16
    back = from_counts(counts, scale)
    clipped = np.clip(values, -32768 * scale, 32767 * scale)
    assert np.all(np.abs(back - clipped) <= scale / 2 + 1e-9 * np.abs(clipped).max(initial=1))


def test_counts_per_site_scale_broadcasts():
    x = np.ones((4, 2, 3))
    c = to_counts(x, np.array([0.5, 0.25]))
    assert c[0, 0, 0] == 2 and c[0, 1, 0] == 4


def test_error_model_pieces_change_the_signal_as_configured():
    spec = part_spec("QMI8658C", "gyro")
    x = np.zeros((20000, 3))
    x[:, 0] = 1.0
    none = corrupt(x, spec, 100.0, np.random.default_rng(0), ErrorModel.none())
    np.testing.assert_array_equal(none, x)
    scale_only = corrupt(x, spec, 100.0, np.random.default_rng(0),
                         ErrorModel(False, False, False, True, False, 0.0, False, False))
    # a scale error of ~3 % on x, nothing on y/z
    assert 0 < abs(scale_only[0, 0] - 1.0) < 0.15 and np.all(scale_only[:, 1:] == 0)
    cross = corrupt(x, spec, 100.0, np.random.default_rng(0),
                    ErrorModel(False, False, False, False, True, 0.0, False, False))
    assert np.all(cross[:, 0] == 1.0) and np.any(cross[0, 1:] != 0)
    walk = corrupt(np.zeros((40000, 3)), spec, 100.0, np.random.default_rng(1),
                   ErrorModel(False, False, True, False, False, 0.0, False, False))
    # random walk: variance grows like t; after 400 s std = density * sqrt(400)
    expected = spec.bias_random_walk * math.sqrt(400.0)
    assert 0.2 * expected < np.abs(walk[-1]).max() < 5 * expected


def test_turn_on_bias_spread_matches_the_datasheet_sigma():
    spec = part_spec("QMI8658C", "acc")
    model = ErrorModel(False, True, False, False, False, 0.0, False, False)
    biases = np.array([corrupt(np.zeros((1, 3)), spec, 100.0, np.random.default_rng(s), model)[0]
                       for s in range(400)])
    assert biases.std() == pytest.approx(spec.bias_turn_on, rel=0.1)


def test_device_clock_drift_jitter_and_determinism():
    clock = DeviceClock(offset_us=5e6, drift_ppm=40.0, jitter_us=30.0, seed=3)
    t, us = clock.sample_times(20000, 200.0, t0=1.0)
    assert t[0] == 1.0 and np.all(np.diff(t) > 0)
    assert np.all(np.diff(us) >= 0) and us.dtype == np.int64
    # fast clock: 20000 ticks at 200 Hz take less than 100 s of true time
    assert t[-1] - 1.0 == pytest.approx(19999 / 200 / (1 + 40e-6))
    resid = us - clock.device_us(t, t0=1.0)
    assert np.std(resid) == pytest.approx(30.0, rel=0.05)
    assert abs(np.mean(resid)) < 2.0
    t2, us2 = clock.sample_times(20000, 200.0, t0=1.0)
    assert us.tobytes() == us2.tobytes()


def test_random_clock_is_plausible_and_seeded():
    a, b, c = DeviceClock.random(1), DeviceClock.random(1), DeviceClock.random(2)
    assert a == b and a != c
    assert abs(a.drift_ppm) < 100 and a.offset_us > 0
