"""Damaged session files for the tests and the benchmark: seeded mutations of a real session and
a judge of what each command does with them (not a test module).

A small session is written by ``imusic simulate`` (real h5py HDF5 through
``capture.session.SessionWriter``, with streams and an aligned group). Seeded mutations of it
(``mutations``: truncations, runs of flipped bytes, zeroed 4 KiB blocks) are each given to
``info``, ``sync``, ``export``, ``view --snapshot`` and ``train``, each run as its own
subprocess under a timeout. A run passes (``judge``) when it either

* fails cleanly: exit status non-zero, one line on stderr that starts ``imusic CMD:`` and
  names the file, no traceback, within the timeout; or
* succeeds (rc 0): the damage missed what the command reads, or hit raw data that HDF5 keeps
  no checksum for (the values change, the file reads); but ``info`` must not say "valid" when
  a dataset cannot be read back (``readable``).

``tests/capture/test_damaged_sessions.py`` runs a few dozen of these;
``benchmarks/bench_damaged_sessions.py`` a bigger sweep.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]

COMMANDS = ("info", "sync", "export", "view", "train")
NOISE = ("XDG_RUNTIME_DIR", "[Open3D")
"""stderr lines that are not imusic's (Open3D's renderer on a headless display)."""


@dataclass
class Mutation:
    """One damaged copy: what was done to which bytes."""

    kind: str          # "truncate", "flip" or "zero"
    offset: int
    length: int

    @property
    def label(self) -> str:
        """Short description, e.g. ``flip@123456+8``."""
        return f"{self.kind}@{self.offset}+{self.length}"

    def apply(self, data: bytes, rng: np.random.Generator) -> bytes:
        """The mutated bytes."""
        if self.kind == "truncate":
            return data[: self.offset]
        buf = bytearray(data)
        end = min(len(buf), self.offset + self.length)
        if self.kind == "zero":
            buf[self.offset:end] = bytes(end - self.offset)
        else:
            noise = rng.integers(1, 256, end - self.offset, dtype=np.uint8).tobytes()
            buf[self.offset:end] = bytes(a ^ b for a, b in zip(buf[self.offset:end], noise))
        return bytes(buf)


def mutations(size: int, n: int, seed: int) -> list[Mutation]:
    """``n`` seeded mutations of a file of ``size`` bytes: a third of each kind. Offsets favour
    the file's first 64 KiB (superblock, object headers, B-trees) as much as the rest."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        kind = ("truncate", "flip", "zero")[i % 3]
        head = rng.random() < 0.5
        off = int(rng.integers(0, min(size, 65536))) if head else int(rng.integers(0, size))
        if kind == "truncate":
            out.append(Mutation(kind, max(off, 1), size - max(off, 1)))
        else:
            out.append(Mutation(kind, off, 4096 if kind == "zero" else int(rng.integers(1, 17))))
    return out


def make_session(folder: Path) -> Path:
    """A small twin session (IMU + Blendshapes streams and an aligned group), ~3 s."""
    subprocess.run([sys.executable, "-m", "imusic", "simulate", "-o", str(folder),
                    "--subjects", "1", "--minutes", "0.05", "--motion", "none", "--procedural"],
                   check=True, capture_output=True, env=env(), timeout=120)
    return next(folder.glob("*.h5"))


def env() -> dict[str, str]:
    """The environment for the subprocesses: this checkout first on the path."""
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO) + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    return e


def argv(command: str, session: Path, work: Path) -> list[str]:
    """The command line for ``command`` on ``session``. ``view`` asks for a frame past the end
    so that a readable file ends with a one-line error before rendering (rendering is slow and
    is not what is tested); ``train`` takes one step per stage."""
    return {
        "info": ["info", "--json", str(session)],
        "sync": ["sync", "--dry-run", "--json", str(session)],
        "export": ["export", str(session), "--format", "csv", "-o", str(work / "out.csv"),
                   "--force"],
        "view": ["view", str(session), "--snapshot", str(work / "s.png"), "--frame", "999999999"],
        "train": ["train", "--data", str(session), "--out", str(work / "ckpt"),
                  "--stage1-steps", "1", "--stage2-steps", "1", "--no-eval", "--quiet"],
    }[command]


@dataclass
class Outcome:
    """What one command did on one file."""

    command: str
    rc: int | None        # None: timed out
    seconds: float
    stdout: str
    lines: list[str]      # stderr lines, noise dropped


def run(command: str, session: Path, work: Path, timeout: float) -> Outcome:
    """Run ``imusic COMMAND`` on ``session`` as a subprocess under ``timeout`` seconds."""
    t0 = time.monotonic()
    try:
        p = subprocess.run([sys.executable, "-m", "imusic", *argv(command, session, work)],
                           capture_output=True, text=True, timeout=timeout, env=env(),
                           cwd=work)
    except subprocess.TimeoutExpired:
        return Outcome(command, None, time.monotonic() - t0, "", [])
    lines = [ln for ln in p.stderr.splitlines()
             if ln.strip() and not any(n in ln for n in NOISE)]
    return Outcome(command, p.returncode, time.monotonic() - t0, p.stdout, lines)


_READ_ALL = """
import sys, h5py
def visit(name, obj):
    if isinstance(obj, h5py.Dataset):
        obj[()]
        dict(obj.attrs.items())
with h5py.File(sys.argv[1], "r") as h5:
    dict(h5.attrs.items())
    h5.visititems(visit)
"""


def readable(path: Path, timeout: float = 20.0) -> bool:
    """True if every dataset and attribute of the file reads back completely (plain h5py, in a
    subprocess: HDF5 can loop forever on a damaged global heap)."""
    try:
        p = subprocess.run([sys.executable, "-c", _READ_ALL, str(path)], capture_output=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        return False
    return p.returncode == 0


def judge(out: Outcome, session: Path, intact: bool) -> str:
    """``""`` when the outcome is acceptable, else what is wrong with it."""
    if out.rc is None:
        return "timed out"
    text = "\n".join(out.lines)
    if "Traceback" in text:
        return "traceback: " + out.lines[-1][:200]
    if out.rc == 0:
        if out.command == "info" and not intact:
            return "info says valid but a dataset cannot be read"
        return ""
    if len(out.lines) != 1:
        return f"{len(out.lines)} stderr lines: " + " | ".join(out.lines)[:300]
    line = out.lines[0]
    if not line.startswith(f"imusic {out.command}:"):
        return "stderr line does not start with the command: " + line[:200]
    if session.name not in line:
        return "stderr line does not name the file: " + line[:200]
    return ""


def sweep(n: int, seed: int, commands: tuple[str, ...], timeout: float,
          folder: Path) -> list[dict]:
    """Run every command on ``n`` mutations; one row per (mutation, command)."""
    original = make_session(folder / "orig")
    data = original.read_bytes()
    rng = np.random.default_rng(seed + 1)
    rows = []
    for i, m in enumerate(mutations(len(data), n, seed)):
        work = folder / f"m{i:04d}"
        work.mkdir()
        damaged = work / original.name
        damaged.write_bytes(m.apply(data, rng))
        intact = readable(damaged)
        for c in commands:
            out = run(c, damaged, work, timeout)
            problem = judge(out, damaged, intact)
            rows.append({"mutation": m.label, "command": c, "rc": out.rc,
                         "seconds": round(out.seconds, 2), "readable": intact,
                         "problem": problem, "line": out.lines[0][:160] if out.lines else ""})
    return rows
