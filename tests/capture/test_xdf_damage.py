"""imusic import on XDF files that are not whole: an empty string stream, a failed import, a
truncated or damaged file (what was lost, per stream), a hole in a stream (gaps), and fuzzed
bytes through the chunk scanner and the import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imusic.capture.session import SessionError, SessionReader
from imusic.capture.session_check import check_session
from imusic.capture.xdf import ImportConfig, XdfImportError, import_xdf, scan_xdf
from .xdf_writer import write_xdf

REPO = Path(__file__).resolve().parents[2]
N = 1230


def _imu(n: int = N, t0: float = 10.0, srate: float = 100.0, hole_at: int | None = None,
         hole_s: float = 0.0) -> dict:
    t = t0 + np.arange(n) / srate
    if hole_at is not None:
        t[hole_at:] += hole_s
    x = np.arange(2 * n, dtype=np.float32).reshape(n, 2)
    return dict(name="Dev", type="IMU", channels=2, srate=srate, format="float32", t=t, x=x,
                offsets=[(t0, 0.5), (t0 + 5, 0.5)])


def _markers(texts: list[str], t0: float = 10.5) -> dict:
    return dict(name="Mk", type="Markers", channels=1, srate=0, format="string",
                t=[t0 + i for i in range(len(texts))], x=[[m] for m in texts], offsets=[])


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "imusic", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def _no_partial(folder: Path) -> None:
    assert not [p.name for p in folder.iterdir() if ".importing-" in p.name]


def test_empty_string_stream_imports(tmp_path):
    src = tmp_path / "e.xdf"
    write_xdf(src, [_imu(50), _markers([])], footers=True)
    p = _cli("import", str(src), "-o", str(tmp_path / "e.h5"))
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    with SessionReader(tmp_path / "e.h5") as s:
        mk = s.stream(s.keys[1])
        assert mk.spec.channel_format == "string" and mk.time_series.shape == (0, 1)
        assert s.closed_cleanly


def test_failed_import_leaves_no_session(tmp_path):
    bad = _markers([])
    bad.update(name="Odd", channels=0)     # pyxdf reads it; a session refuses it, mid-import
    src = tmp_path / "f.xdf"
    write_xdf(src, [_imu(50), bad])
    out = tmp_path / "f.h5"
    p = _cli("import", str(src), "-o", str(out))
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("imusic import:") and "channel_count" in lines[0]
    assert not out.exists()
    _no_partial(tmp_path)


def test_truncated_file_says_what_was_lost(tmp_path):
    src = tmp_path / "t.xdf"
    data = write_xdf(src, [_imu(), _markers(["a", "b", "c"])], per_chunk=100, footers=True)
    cut = tmp_path / "cut.xdf"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    scan = scan_xdf(cut)
    assert scan.announced[1] > 0 and not scan.footer_count        # footers are at the end
    assert any("truncated" in p for p in scan.problems)
    rep = import_xdf(cut, tmp_path / "cut.h5")
    dev = rep.streams[0]
    assert not rep.complete
    assert 0 < dev.samples < N and dev.expected == scan.announced[1]
    assert dev.lost == dev.expected - dev.samples > 0
    # The CLI: every stream's line, then one line naming the file and the loss; rc 1.
    p = _cli("import", str(cut), "-o", str(tmp_path / "cut2.h5"))
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert f"{dev.samples} samples ({dev.lost} of {dev.expected} lost)" in p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("imusic import:") and "cut.xdf" in last and "truncated" in last
    # What was lost stays in the session, and info says so.
    info = check_session(tmp_path / "cut2.h5")
    assert any("damaged XDF" in w and "lost" in w for w in info.warnings)


def test_damaged_chunk_counts_against_the_footer(tmp_path):
    src = tmp_path / "d.xdf"
    data = bytearray(write_xdf(src, [_imu()], per_chunk=100, footers=True))
    # Break the sample count of the 5th samples chunk: pyxdf skips to the next boundary.
    starts = [i for i in range(len(data) - 7)
              if data[i] == 4 and data[i + 5:i + 7] == b"\x03\x00"]
    k = starts[4] + 1 + 4 + 2 + 4          # length byte + length + tag + stream id
    data[k] = 0x07                          # not a valid length-byte count
    bad = tmp_path / "bad.xdf"
    bad.write_bytes(bytes(data))
    rep = import_xdf(bad, tmp_path / "bad.h5")
    dev = rep.streams[0]
    assert dev.expected == N and dev.samples == N - 100 and dev.lost == 100
    assert rep.problems and not rep.complete
    # The 100 missing samples are a 1 s hole: a gap, as a recording would have.
    assert dev.gaps == 1 and dev.gap_s == pytest.approx(1.01, abs=0.02)


def test_hole_in_a_stream_is_a_gap(tmp_path):
    src = tmp_path / "h.xdf"
    write_xdf(src, [_imu(hole_at=600, hole_s=273.6), _markers(["x"])], footers=True)
    rep = import_xdf(src, tmp_path / "h.h5")
    dev = rep.streams[0]
    assert rep.complete and dev.gaps == 1 and dev.gap_s == pytest.approx(273.61, abs=1e-6)
    info = check_session(tmp_path / "h.h5")
    s = next(s for s in info.streams if s.name == "Dev")
    assert s.gaps == 1 and s.gap_s == pytest.approx(273.61, abs=1e-6)
    assert info.valid
    with SessionReader(tmp_path / "h.h5") as r:
        g = r.stream(r.keys[0]).gaps
        np.testing.assert_allclose(g, [[10.0 + 5.99, 10.0 + 6.0 + 273.6]])
    # The threshold is a setting: 300 s hides this hole.
    rep2 = import_xdf(src, tmp_path / "h2.h5", config=ImportConfig(gap_threshold_s=300.0))
    assert rep2.streams[0].gaps == 0


def test_real_minimal_xdf_is_complete(shared_data, tmp_path):
    src = shared_data / "xdf" / "minimal.xdf"
    scan = scan_xdf(src)
    # LabRecorder stream ids 0 and 0x02C0FFEE, 9 samples each (as PROVENANCE.md says).
    assert scan.footer_count == {0: 9, 0x02C0FFEE: 9} and not scan.problems
    assert scan.announced == scan.footer_count
    rep = import_xdf(src, tmp_path / "m.h5")
    assert rep.complete and all(s.lost == 0 and s.gaps == 0 for s in rep.streams)


def test_real_minimal_xdf_truncated(shared_data, tmp_path):
    data = (shared_data / "xdf" / "minimal.xdf").read_bytes()
    for i, frac in enumerate((0.3, 0.5, 0.7, 0.9)):
        cut = tmp_path / f"c{i}.xdf"
        cut.write_bytes(data[: int(len(data) * frac)])
        try:
            rep = import_xdf(cut, tmp_path / f"c{i}.h5")
        except XdfImportError as err:
            assert f"c{i}.xdf" in str(err)
            continue
        # The footers are gone: the import says the file is not whole.
        assert not rep.complete and rep.problems


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=400))
def test_scan_never_raises_on_any_bytes(tmp_path, blob):
    f = tmp_path / "x.xdf"
    f.write_bytes(b"XDF:" + blob)
    scan = scan_xdf(f)
    assert scan.size == len(blob) + 4
    assert all(v >= 0 for v in scan.announced.values())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_import_of_mutated_files(tmp_path_factory, data):
    tmp = tmp_path_factory.mktemp("mut")
    orig = write_xdf(tmp / "o.xdf", [_imu(300), _markers(["a", "b"])], per_chunk=50,
                     footers=True)
    buf = bytearray(orig)
    if data.draw(st.booleans(), "truncate"):
        buf = buf[: data.draw(st.integers(5, len(buf) - 1), "cut")]
    else:
        for _ in range(data.draw(st.integers(1, 4), "flips")):
            i = data.draw(st.integers(4, len(buf) - 1), "at")
            buf[i] ^= data.draw(st.integers(1, 255), "xor")
    src = tmp / "m.xdf"
    src.write_bytes(bytes(buf))
    out = tmp / "m.h5"
    try:
        rep = import_xdf(src, out)
    except (XdfImportError, SessionError) as err:
        assert "m.xdf" in str(err) or "m.h5" in str(err) or "stream" in str(err)
        assert not out.exists()
    else:
        assert out.exists()
        for s in rep.streams:
            assert s.lost == max(0, s.expected - s.samples)
        if not rep.complete:      # info shows what was lost
            assert any("damaged XDF" in w for w in check_session(out).warnings)
    assert not [p.name for p in tmp.iterdir() if ".importing-" in p.name]
