"""Property tests (hypothesis) of the pure parts: feature invariance, channel parsing by label,
resampling of face-lost rows."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from imusic.model.features import relative_features
from imusic.model.runtime import ChannelLayout
from imusic.model.simulate import resample_take

seeds = st.integers(0, 2**31 - 1)


@settings(max_examples=60, deadline=None)
@given(seeds, st.integers(2, 6))
def test_relative_features_ignore_a_common_rotation(seed, n_sensors):
    """Rotating every sensor's orientation by the same matrix (the head) changes nothing."""
    rng = np.random.default_rng(seed)
    rot = Rotation.random(n_sensors, random_state=seed).as_matrix()
    gyro, acc = rng.normal(size=(n_sensors, 3)), rng.normal(size=(n_sensors, 3)) * 9.81
    head = Rotation.random(random_state=seed + 1).as_matrix()
    face = np.arange(1, n_sensors)
    a = relative_features(rot, gyro, acc, 0, face)
    b = relative_features(head @ rot, gyro, acc, 0, face)
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert a.shape == (12 * (n_sensors - 1),)


@settings(max_examples=60, deadline=None)
@given(seeds, st.integers(1, 5), st.booleans())
def test_channel_layout_finds_channels_in_any_order(seed, n_sites, with_mag):
    rng = np.random.default_rng(seed)
    sites = [f"site{i}" for i in range(n_sites)]
    qs = ["acc", "gyro"] + (["mag"] if with_mag else [])
    labels = [f"{s}.{q}.{a}" for s in sites for q in qs for a in "xyz"]
    labels += ["device.time_us", "device.seq"]
    order = rng.permutation(len(labels))
    shuffled = [labels[i] for i in order]
    values = {lab: float(k) for k, lab in enumerate(labels)}
    row = np.array([[values[lab] for lab in shuffled]])
    lay = ChannelLayout(shuffled, sites)
    acc, gyro, mag, quat = lay.split(row)
    for j, s in enumerate(sites):
        for k, a in enumerate("xyz"):
            assert acc[0, j, k] == values[f"{s}.acc.{a}"]
            assert gyro[0, j, k] == values[f"{s}.gyro.{a}"]
            if with_mag:
                assert mag[0, j, k] == values[f"{s}.mag.{a}"]
    assert (mag is None) == (not with_mag)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.booleans(), min_size=4, max_size=40), seeds)
def test_resampling_never_bridges_a_lost_row(found_list, seed):
    found = np.array(found_list)
    if found.sum() < 2:
        found[:2] = True
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.uniform(0.02, 0.05, len(found)))
    t -= t[0]
    values = rng.normal(size=(len(found), 3))
    out, valid = resample_take(t, values, found)
    grid = np.arange(len(valid)) / 60.0
    for g, v in zip(grid, valid):
        if not v:
            continue
        j = np.searchsorted(t, g)
        if np.isclose(t[min(j, len(t) - 1)], g):
            assert found[min(j, len(t) - 1)]
        elif j > 0 and np.isclose(t[j - 1], g):
            assert found[j - 1]
        else:
            assert found[j - 1] and found[j]
    assert np.all(np.isfinite(out[valid])) and np.all(np.isnan(out[~valid]))


@settings(max_examples=150, deadline=None)
@given(seeds, st.integers(1, 4), st.sampled_from(["ahrs", "reported"]),
       st.lists(st.tuples(st.booleans(), st.booleans(), st.booleans()), min_size=4,
                max_size=4))
def test_channel_layout_takes_what_the_features_need(seed, n_sites, orientation, has):
    """Any mix of per-site quantities, in any channel order: the quantities the orientation
    source needs (gyro for the AHRS, quat for reported orientation) are required at every site
    (else MissingChannels names the quantity and exactly the sites that lack it); optional
    ones come through per site, NaN where a site lacks them, None where all do."""
    from imusic.model.runtime import MissingChannels

    rng = np.random.default_rng(seed)
    sites = [f"site{i}" for i in range(n_sites)]
    present = {s: {"acc"} | {q for q, ok in zip(("gyro", "mag", "quat"), has[i]) if ok}
               for i, s in enumerate(sites)}
    labels = [f"{s}.{q}.{a}" for s in sites for q in ("acc", "gyro", "mag", "quat")
              if q in present[s] for a in ("wxyz" if q == "quat" else "xyz")]
    labels += ["device.time_us", "device.seq"]
    labels = [labels[i] for i in rng.permutation(len(labels))]
    row = rng.normal(size=(1, len(labels)))
    value = {lab: row[0, k] for k, lab in enumerate(labels)}
    need = "gyro" if orientation == "ahrs" else "quat"
    lacking = [s for s in sites if need not in present[s]]
    if lacking:
        try:
            ChannelLayout(labels, sites, orientation)
        except MissingChannels as err:
            assert err.quantity == need and err.sites == lacking
            assert err.channels.startswith(f"{lacking[0]}.{need}.") and "\n" not in str(err)
        else:
            raise AssertionError("a layout without a needed quantity was accepted")
        return
    ch = ChannelLayout(labels, sites, orientation).split(row)
    for q in ("acc", "gyro", "mag", "quat"):
        got = getattr(ch, q)
        used = q != "quat" or orientation == "reported"
        if not used or not any(q in present[s] for s in sites):
            assert got is None, q
            continue
        for j, s in enumerate(sites):
            for k, a in enumerate("wxyz" if q == "quat" else "xyz"):
                want = value.get(f"{s}.{q}.{a}", np.nan) if q in present[s] else np.nan
                np.testing.assert_equal(got[0, j, k], want)
