"""Sync as a pure computation: ``align`` on streams in memory, ``SyncConfig``, and a fuzz of both.

The session-level behaviour (lag, tap, gaps, CLI) is in test_sync.py; this file checks the
parts that need no file: exact values on a small constructed case, that ``sync_session`` is
``align`` plus a write, that every threshold is a documented ``SyncConfig`` field reachable as
a keyword, and that arbitrary timestamps, gaps and empty streams raise nothing but
``SyncError``.
"""

from __future__ import annotations

import ast
import inspect
import warnings
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from imusic.capture import calibration, protocol_session, sync_config
from imusic.capture.aligned import read_aligned
from imusic.capture.calibration import CalibrationConfig
from imusic.capture.protocol_session import RunnerConfig
from imusic.capture.session import SessionReader, SessionWriter, StreamData, StreamSpec
from imusic.capture.session_check import CheckConfig
from imusic.capture.sync import SyncConfig, SyncError, align, sync_session
from imusic.capture.sync_clock import dejitter, segments
from imusic.capture.sync_config import threshold_names
from imusic.hardware.vocabulary import ARKIT_NAMES, N_BLENDSHAPES, STREAM_NAMES

SITES = ("ref", "mentalis")
JAW = ARKIT_NAMES.index("jawOpen")
G = np.array([0.0, 0.0, 9.81])


def imu_stream(t: np.ndarray, acc: np.ndarray | None = None, srate: float = 100.0,
               key: str = "imu") -> StreamData:
    """An IMU stream of two still sites (``ref`` and ``mentalis``) at timestamps ``t``."""
    labels = [f"{s}.{q}.{a}" for s in SITES for q in ("acc", "gyro") for a in "xyz"]
    n = len(t)
    acc = np.tile(G, (n, len(SITES), 1)) if acc is None else acc
    rows = np.concatenate([acc, np.zeros((n, len(SITES), 3))], axis=2).reshape(n, 12)
    spec = StreamSpec(key, "IMU", len(labels), srate, "double64", labels=labels)
    return StreamData(key, spec, rows, np.asarray(t, np.float64), np.zeros((0, 2)),
                      np.zeros((0, 2)), {})


def bs_stream(t: np.ndarray, values: np.ndarray, srate: float = 60.0,
              key: str = "arkit") -> StreamData:
    """A Blendshapes stream (61 labelled channels) at timestamps ``t``."""
    spec = StreamSpec(key, "Blendshapes", len(STREAM_NAMES), srate, "float32",
                      labels=list(STREAM_NAMES))
    return StreamData(key, spec, np.asarray(values, np.float64), np.asarray(t, np.float64),
                      np.zeros((0, 2)), np.zeros((0, 2)), {})


def small_case():
    """IMU 10.00..12.50 s at 100 Hz, a 30 m/s^2 tap on the chin at 11.00 s; blendshapes from
    10.50 s at 60 Hz for 3 s, jawOpen a ramp k/180, everything else 0."""
    ti = 10.0 + np.arange(251) / 100.0
    acc = np.tile(G, (len(ti), 2, 1))
    acc[100, 1, 0] += 30.0                                   # the tap, t = 11.00 s
    tb = 10.5 + np.arange(180) / 60.0
    v = np.zeros((len(tb), len(STREAM_NAMES)))
    v[:, JAW] = np.arange(len(tb)) / 180.0
    return imu_stream(ti, acc), bs_stream(tb, v)


def test_align_exact_values_on_a_small_case():
    imu, bs = small_case()
    res = align(imu, bs, lag=0.02)
    a = res.aligned
    # Output grid: from max(10.00, 10.50 - 0.02) to min(12.50, 13.4833 - 0.02), 60 Hz:
    # floor(2.02 * 60) + 1 = 122 frames.
    assert a.n_frames == 122 and a.rate_hz == 60.0
    assert a.t[0] == pytest.approx(10.48, abs=1e-9)
    np.testing.assert_allclose(np.diff(a.t), 1 / 60, atol=1e-12)
    assert a.valid_imu.all() and a.valid_arkit.all()
    # Grid frame k is blendshape sample k shifted by -lag: the ramp comes back sample by sample.
    np.testing.assert_allclose(a.blendshapes[:, JAW], np.arange(122) / 180.0, atol=1e-6)
    assert not np.delete(a.blendshapes, JAW, axis=1).any() and not a.pose.any()
    # Still sensors: gravity (float32) and no rotation; no magnetometer, no quaternions. The
    # chin's tap is smoothed by the anti-alias low-pass: largest at the frame nearest 11.00 s,
    # rung out 0.75 s later.
    np.testing.assert_allclose(a.acc[:, 0], np.broadcast_to(G, (122, 3)), atol=1e-6)
    dev = np.abs(a.acc[:, 1] - G).max(axis=1)
    assert int(np.argmax(dev)) == int(np.argmin(np.abs(a.t - 11.0))) and dev.max() > 2.0
    assert dev[a.t > 11.75].max() < 1e-5
    assert np.abs(a.gyro).max() < 1e-6
    assert np.isnan(a.mag).all() and a.quat is None
    assert a.sites == list(SITES) and a.reference == "ref" and a.rig_id == "unknown"
    # The tap: the chin sample at 11.00 s (2 g floor, nothing else moves); the ramp's jaw
    # energy is flat, so no twitch stands out. A forced lag has confidence 1.
    assert res.tap_imu == pytest.approx(11.0, abs=1e-9) and np.isnan(res.tap_blendshapes)
    assert res.lag_s == 0.02 and res.lag_confidence == 1.0
    assert a.attrs["tap_detected_in"] == ["imu"] and a.attrs["source"] == "recording"
    assert a.attrs["imu_stream"] == "imu" and a.attrs["blendshapes_stream"] == "arkit"
    # Still but for the 0.5 s window (50 samples) around the tap: no bias, identity rotations.
    # Neutral and still: from the first blendshape (10.50 s) until the tap's window (10.75 s).
    cal = res.calibration
    assert cal.still_fraction == pytest.approx(201 / 251) and not cal.gyro_bias.any()
    np.testing.assert_allclose(cal.neutral_segment, [10.5, 10.75], atol=1e-9)
    np.testing.assert_allclose(res.calibration.relative_rotation[1], np.eye(3), atol=1e-9)


def test_thresholds_change_what_align_finds():
    imu, bs = small_case()
    assert np.isnan(align(imu, bs, lag=0.0, config=SyncConfig(tap_min_spike=40.0)).tap_imu)
    assert align(imu, bs, lag=0.0, config=SyncConfig(rate_hz=30.0)).aligned.n_frames == 61
    with pytest.raises(SyncError, match="too little data"):
        align(imu, bs, config=SyncConfig(min_samples=1000))
    with pytest.raises(SyncError, match="overlap by less than 5 s"):
        align(imu, bs, config=SyncConfig(min_overlap_s=5.0))


def test_sync_session_is_align_plus_a_write(tmp_path):
    imu, bs = small_case()
    path = tmp_path / "s.h5"
    with SessionWriter(path) as w:
        for s in (imu, bs):
            k = w.add_stream(s.spec)
            w.append(k, s.time_series, s.time_stamps)
    with SessionReader(path) as r:
        keys = (r.keys_of_type("IMU")[0], r.keys_of_type("Blendshapes")[0])
        pure = align(r.stream(keys[0]), r.stream(keys[1]), root_attrs=dict(r.attrs),
                     config=SyncConfig(max_lag=0.3))
    res = sync_session(path, max_lag=0.3)
    on_disk = read_aligned(path)
    for name in ("t", "blendshapes", "pose", "acc", "gyro", "mag", "valid_imu", "valid_arkit"):
        np.testing.assert_array_equal(getattr(res.aligned, name), getattr(pure.aligned, name))
        np.testing.assert_array_equal(getattr(on_disk, name), getattr(pure.aligned, name))
    assert res.lag_s == pure.lag_s and res.lag_confidence == pure.lag_confidence
    with pytest.raises(TypeError, match="unknown sync threshold.*max_lagg"):
        sync_session(path, max_lagg=0.3)


def _field_docs(cls) -> dict[str, str]:
    """Field name -> the string literal right after its annotation in the class body."""
    body = ast.parse(inspect.getsource(cls)).body[0].body
    docs = {}
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) \
                and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str):
            docs[node.target.id] = nxt.value.value
    return docs


@pytest.mark.parametrize("cls", [SyncConfig, CalibrationConfig, RunnerConfig, CheckConfig])
def test_every_threshold_has_a_doc_and_a_default(cls):
    docs = _field_docs(cls)
    for f in fields(cls):
        assert f.name in docs and "\n" not in docs[f.name].strip(), f.name
    cls()        # every field has a default


def test_threshold_keywords_reach_both_configs():
    cfg = SyncConfig().with_(max_lag=0.4, gyro_std=0.05)
    assert cfg.max_lag == 0.4 and cfg.calibration.gyro_std == 0.05
    assert SyncConfig().calibration.gyro_std == CalibrationConfig().gyro_std
    assert set(threshold_names()) == ({f.name for f in fields(SyncConfig)}
                                      | {f.name for f in fields(CalibrationConfig)})
    with pytest.raises(ValueError, match="rate_hz must be > 0"):
        SyncConfig(rate_hz=0.0)
    with pytest.raises(ValueError, match="max_lag must be a number"):
        SyncConfig(max_lag=float("nan"))


STRUCTURAL = {0, 1, 2, -1, 3, 4, 0.5}
"""Numbers a body may hold: indices, xyz (3) and wxyz (4) axes, halves (rounding, Nyquist)."""


@pytest.mark.parametrize("path", ["sync.py", "sync_clock.py", "sync_streams.py",
                                  "sync_events.py", "sync_resample.py", "calibration.py",
                                  "protocol_session.py"])
def test_no_threshold_literal_in_a_body(path):
    """Thresholds live in the config dataclasses: function bodies and signatures hold none."""
    tree = ast.parse((Path(calibration.__file__).parent / path).read_text())
    found = []
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for part in [*fn.body, *fn.args.defaults, *filter(None, fn.args.kw_defaults)]:
                found += [(n.lineno, n.value) for n in ast.walk(part)
                          if isinstance(n, ast.Constant) and type(n.value) in (int, float)
                          and n.value not in STRUCTURAL]
    assert not found, f"capture/{path}: numeric literals (line, value) {sorted(set(found))}"


@pytest.mark.parametrize("module", [sync_config, calibration, protocol_session])
def test_threshold_modules_import_no_sync_step(module):
    """The configs stay leaves: every step module imports them, never the other way round."""
    src = inspect.getsource(module)
    assert "capture.sync_" not in src.replace("capture.sync_config", "")


def test_irregular_imu_needs_timestamps_that_advance():
    """An IMU stream with no nominal rate gets its rate from its timestamps: not from
    timestamps that stand still, or that would make it faster than ``max_imu_rate_hz``."""
    _, bs = small_case()
    with pytest.raises(SyncError, match="timestamps do not advance"):
        align(imu_stream(np.full(300, 10.0), srate=0.0), bs)
    with pytest.raises(SyncError, match="over max_imu_rate_hz"):
        align(imu_stream(10.0 + np.arange(300) * 1e-6, srate=0.0), bs)


# ------------------------------------------------------------------ fuzz

@settings(max_examples=400, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=0, max_size=60),
       st.sampled_from([0.0, 30.0, 60.0, 100.0]), st.booleans())
def test_fuzz_dejitter_never_raises(ts, rate, sort):
    """Any finite timestamps: segments cover them, dejitter keeps their number (a segment no
    line fits stays as recorded; this raised numpy's LinAlgError before)."""
    ts = np.sort(ts) if sort else np.asarray(ts, np.float64)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = dejitter(ts, rate)
    assert out.shape == ts.shape
    segs = segments(ts, rate)
    assert sum(b - a for a, b in segs) == len(ts)


def _timestamps(draw, n: int, rate: float) -> np.ndarray:
    kind = draw(st.sampled_from(["regular", "jitter", "gaps", "arbitrary", "sorted"]))
    start = draw(st.floats(-1e6, 1e6, allow_nan=False))
    k = np.arange(n, dtype=np.float64)
    if kind == "arbitrary":
        return np.array(draw(st.lists(st.floats(allow_nan=True, allow_infinity=True,
                                                width=64), min_size=n, max_size=n)))
    if kind == "sorted":
        return np.sort(np.array(draw(st.lists(st.floats(-1e3, 1e3), min_size=n,
                                              max_size=n))))
    t = start + k / rate
    if kind == "jitter":
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        t = t + rng.normal(0, draw(st.floats(0, 0.05)), n)
    if kind == "gaps" and n > 2:
        for at in draw(st.lists(st.integers(1, n - 1), max_size=3)):
            t[at:] += draw(st.floats(0, 10))
    return t


@st.composite
def stream_pairs(draw):
    rate_i = draw(st.sampled_from([0.0, 50.0, 100.0]))
    rate_b = draw(st.sampled_from([0.0, 30.0, 60.0]))
    n_i = draw(st.integers(0, 400))
    n_b = draw(st.integers(0, 250))
    ti = _timestamps(draw, n_i, rate_i or 100.0)
    tb = _timestamps(draw, n_b, rate_b or 60.0)
    if draw(st.booleans()) and n_b and n_i:       # make them overlap
        with np.errstate(all="ignore"):           # inf - inf in arbitrary timestamps
            tb = tb - tb[0] + ti[0] + draw(st.floats(-2, 2))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    acc = np.tile(G, (n_i, 2, 1)) + rng.normal(0, draw(st.floats(0, 30)), (n_i, 2, 3))
    if n_i and draw(st.booleans()):
        acc[rng.integers(0, n_i, 3)] = np.nan          # dropped readings
    v = rng.uniform(0, 1, (n_b, len(STREAM_NAMES)))
    if n_b and draw(st.booleans()):
        v[rng.integers(0, n_b, max(1, n_b // 5)), :N_BLENDSHAPES] = np.nan   # face lost
    taps = draw(st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=2))
    lag = draw(st.one_of(st.none(), st.floats(-2, 2)))
    return imu_stream(ti, acc, rate_i), bs_stream(tb, v, rate_b), taps, lag


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream_pairs())
def test_fuzz_align_raises_only_sync_error(case):
    imu, bs, taps, lag = case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # numeric warnings on garbage are fine
        try:
            res = align(imu, bs, marker_taps=taps, lag=lag)
        except SyncError as err:
            assert str(err) and "\n" not in str(err)
            event("SyncError")
            return
    event("aligned" + (" (frames)" if res.aligned.n_frames else " (empty)"))
    a = res.aligned
    n = a.n_frames
    assert a.blendshapes.shape == (n, N_BLENDSHAPES) and a.acc.shape == (n, 2, 3)
    assert a.valid_imu.dtype == bool and a.valid_arkit.dtype == bool
    assert not a.blendshapes[~a.valid_arkit].any() and not a.acc[~a.valid_imu].any()
    assert np.isfinite(res.lag_s) and 0.0 <= res.lag_confidence <= 1.0
