"""Damaged session files: every command that opens a session ends with one clear line and a
non-zero exit, within seconds (or succeeds when the damage was harmless), and ``info`` reads the
data back. Seeded mutations (truncations, flipped bytes, zeroed blocks) of a session written by
``imusic simulate``; each command is its own subprocess under a timeout. The bigger sweep is
benchmarks/bench_damaged_sessions.py."""

from __future__ import annotations

import json
import math

import h5py
import numpy as np
import pytest

from .session_damage import (
    COMMANDS,
    judge,
    make_session,
    mutations,
    readable,
    run,
)
from imusic.capture.session import DamagedSessionError, SessionReader, damaged_global_heap, open_h5
from imusic.capture.session_check import check_session

N_MUTATIONS = 12
TIMEOUT_S = 120.0     # far above a clean error (seconds, a short train ~5 s quiet); a hang is hours


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    return make_session(tmp_path_factory.mktemp("orig"))


@pytest.fixture(scope="module")
def damaged(original, tmp_path_factory):
    """(mutation label, folder, damaged copy, every dataset readable?) for each mutation."""
    data = original.read_bytes()
    rng = np.random.default_rng(1)
    out = []
    for i, m in enumerate(mutations(len(data), N_MUTATIONS, seed=7)):
        work = tmp_path_factory.mktemp(f"m{i:02d}")
        f = work / original.name
        f.write_bytes(m.apply(data, rng))
        out.append((m.label, work, f, readable(f)))
    return out


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_on_damaged_files(command, damaged):
    # sync and train on every copy would take minutes: they get every other one (the suite's
    # budget; the benchmark runs them all).
    problems, clean, runs = [], 0, 0
    for i, (label, work, f, intact) in enumerate(damaged):
        if command in ("sync", "train") and i % 2:
            continue
        runs += 1
        out = run(command, f, work, TIMEOUT_S)
        why = judge(out, f, intact)
        if why:
            problems.append(f"{label}: {why}")
        clean += out.rc not in (0, None) and not why
    assert not problems, "\n".join(problems)
    assert clean >= runs // 3       # most mutations do damage: they must be refused


def test_truncated_and_zeroed_heap_fail_fast(original, tmp_path):
    data = original.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(DamagedSessionError, match="cut.h5"):
        SessionReader(cut)
    # A global heap (where HDF5 keeps strings) whose objects are zeroed: HDF5 2.0 would loop
    # forever reading any string attribute. Found and refused before HDF5 reads it.
    at = data.find(b"GCOL")
    heap = bytearray(data)
    heap[at + 16:at + 4096] = bytes(4096 - 16)
    zeroed = tmp_path / "heap.h5"
    zeroed.write_bytes(bytes(heap))
    assert damaged_global_heap(zeroed) == at
    assert damaged_global_heap(original) is None
    with pytest.raises(DamagedSessionError, match="global heap"):
        open_h5(zeroed)


def _flip_first_chunk(path, dataset):
    """Corrupt the first stored chunk of ``dataset`` (its compressed bytes) in place."""
    with h5py.File(path, "r") as h5:
        info = h5[dataset].id.get_chunk_info(0)
    with open(path, "r+b") as f:
        f.seek(info.byte_offset + info.size // 2)
        b = f.read(8)
        f.seek(info.byte_offset + info.size // 2)
        f.write(bytes(x ^ 0xFF for x in b))


def test_info_reads_the_data(original, tmp_path):
    f = tmp_path / "chunk.h5"
    f.write_bytes(original.read_bytes())
    _flip_first_chunk(f, "aligned/gyro")
    rep = check_session(f)
    assert not rep.valid
    assert any("/aligned/gyro cannot be read" in e for e in rep.errors), rep.errors


def test_json_has_no_nan(original, tmp_path):
    from .session_damage import env
    import subprocess
    import sys

    def strict(text):
        def refuse(name):
            raise ValueError(f"not JSON: {name}")
        return json.loads(text, parse_constant=refuse)

    for args in (["info", "--json", str(original)],
                 ["sync", "--dry-run", "--json", str(original)]):
        p = subprocess.run([sys.executable, "-m", "imusic", *args], capture_output=True,
                           text=True, env=env(), timeout=120)
        assert p.returncode == 0, p.stderr
        doc = strict(p.stdout)
        assert doc
    # The twin session has no clock offsets: those means are null, not NaN.
    doc = strict(subprocess.run([sys.executable, "-m", "imusic", "info", "--json",
                                 str(original)], capture_output=True, text=True, env=env(),
                                timeout=120).stdout)
    assert doc["streams"][0]["offset_mean_ms"] is None
    assert not any(isinstance(v, float) and not math.isfinite(v)
                   for v in doc["streams"][0].values())
