"""imusic import: LabRecorder XDF files (the real minimal.xdf, and written ones with a clock
reset and an empty stream) into session files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from imusic.capture.session import SessionError, SessionReader
from imusic.capture.xdf import XdfImportError, import_xdf
from .xdf_writer import write_xdf

REPO = Path(__file__).resolve().parents[2]


def test_real_minimal_xdf(shared_data, tmp_path):
    out = tmp_path / "s.h5"
    report = import_xdf(shared_data / "xdf" / "minimal.xdf", out)
    assert [s.name for s in report.streams] == ["SendDataC", "SendDataString"]
    with SessionReader(out) as s:
        assert s.attrs["source"] == "xdf" and s.closed_cleanly
        key = s.keys[0]
        d = s.stream(key)
        assert d.spec.type == "EEG" and d.spec.channel_format == "int16"
        assert d.spec.nominal_srate == 10 and d.time_series.dtype == np.int16
        assert d.time_series.shape == (9, 3)
        assert d.time_series[1].tolist() == [12, 22, 32]
        np.testing.assert_allclose(d.time_stamps, 5.1 + 0.1 * np.arange(9))
        # XDF offsets (6.1, -0.1), (7.1, -0.1): sender-clock collection times -> recorder time.
        np.testing.assert_allclose(d.clock_offsets, [[6.0, -0.1], [7.0, -0.1]])
        m = s.stream(s.keys[1])
        assert m.spec.channel_format == "string" and m.time_series.shape == (9, 1)
        assert m.time_series[1, 0] == "Hello" and m.time_series[2, 0] == "World"
        texts = [e.text for e in s.events()]
        assert "Hello" in texts and "World" in texts
        assert "<name>SendDataC</name>" in d.spec.info_xml
    with h5py.File(out) as h5:
        notes = json.loads(h5.attrs["xdf_streams"])
        assert all(not v["clock_reset"] for v in notes.values())


def test_clock_reset_and_empty_stream(tmp_path):
    n = 200
    t1 = 1000.0 + np.arange(n) / 100          # sender clock before the reset
    t2 = 3.0 + np.arange(n) / 100             # after: the device restarted its clock
    x = np.arange(2 * n, dtype=np.float32).reshape(-1, 1) * [1, 2]
    offsets = [(1000.0 + k, -900.0) for k in range(2)] + [(3.0 + k, 1100.0) for k in range(2)]
    steady = 50.0 + np.arange(n) / 100
    write_xdf(tmp_path / "r.xdf", [
        dict(name="Dev", type="IMU", channels=2, srate=100, format="float32",
             t=np.r_[t1, t2], x=x, offsets=offsets),
        dict(name="Empty", type="Blendshapes", channels=61, srate=60, format="float32",
             t=[], x=[], offsets=[]),
        dict(name="Mk", type="Markers", channels=1, srate=0, format="string",
             t=[100.5], x=[["tap"]], offsets=[]),
        dict(name="Steady", type="IMU", channels=2, srate=100, format="float32",
             t=steady, x=x[:n], offsets=[(50.0, 0.25), (51.0, 0.25)]),
    ])
    report = import_xdf(tmp_path / "r.xdf", tmp_path / "r.h5")
    by = {s.name: s for s in report.streams}
    assert by["Dev"].clock_reset and not by["Steady"].clock_reset
    assert by["Empty"].samples == 0
    with SessionReader(tmp_path / "r.h5") as s:
        dev = s.stream(by["Dev"].key)
        # Synchronised across the reset: one continuous timeline on the recorder clock.
        np.testing.assert_allclose(dev.time_stamps[:n], t1 - 900.0, atol=1e-6)
        np.testing.assert_allclose(dev.time_stamps[n:], t2 + 1100.0, atol=1e-6)
        assert len(dev.clock_offsets) == 0 and dev.time_series.shape == (2 * n, 2)
        empty = s.stream(by["Empty"].key)
        assert empty.time_series.shape == (0, 61) and empty.spec.type == "Blendshapes"
        steady_d = s.stream(by["Steady"].key)
        np.testing.assert_allclose(steady_d.time_stamps, steady)      # raw, sender clock
        np.testing.assert_allclose(steady_d.clock_offsets, [[50.25, 0.25], [51.25, 0.25]])
        assert any("clock reset" in e.text for e in s.events())
        assert any(e.text == "tap" for e in s.events())


def test_errors(tmp_path, shared_data):
    with pytest.raises(FileNotFoundError, match="nope.xdf"):
        import_xdf(tmp_path / "nope.xdf", tmp_path / "a.h5")
    bad = tmp_path / "bad.xdf"
    bad.write_bytes(b"not an xdf file at all")
    with pytest.raises(XdfImportError, match="bad.xdf"):
        import_xdf(bad, tmp_path / "b.h5")
    existing = tmp_path / "c.h5"
    existing.write_bytes(b"")
    with pytest.raises(SessionError, match="already exists"):
        import_xdf(shared_data / "xdf" / "minimal.xdf", existing)


def test_cli_import(shared_data, tmp_path):
    out = tmp_path / "m.h5"
    p = subprocess.run([sys.executable, "-m", "imusic", "import",
                        str(shared_data / "xdf" / "minimal.xdf"), "-o", str(out)],
                       cwd=REPO, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "SendDataC: EEG 9 samples, 2 clock offsets" in p.stderr
    p = subprocess.run([sys.executable, "-m", "imusic", "import",
                        str(shared_data / "xdf" / "minimal.xdf"), "-o", str(out)],
                       cwd=REPO, capture_output=True, text=True)
    assert p.returncode == 2 and "already exists" in p.stderr
