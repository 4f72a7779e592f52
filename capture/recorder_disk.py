"""The recorder's disk guard: free space, the reserve file, and what a stopped file keeps.

Part of the recorder (``capture/recorder.py`` says how the pieces fit). The writer thread
checks free space every ``RecordLimits.disk_check_s``: it warns when it lasts less than
``warn_free_hours`` at the streams' uncompressed data rate (``stream_byte_rate``) and raises
``DiskFull`` below ``min_free_bytes``, so the file closes cleanly with room left. A reserve file
(``make_ballast``, ``ballast_bytes`` with its blocks allocated) sits beside the session: if a
write fails anyway, deleting it gives HDF5 the room to close the file. ``saved_summary`` says
in words what a stopped file keeps.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np

from imusic.capture.session import SessionReader, StreamSpec


class DiskFull(Exception):
    """Free disk space fell below ``RecordLimits.min_free_bytes``: stop before writes fail."""


def check_free_space(path: Path, free: int, byte_rate: float, min_free_bytes: int,
                     warn_free_hours: float, warned_hours: float) -> tuple[str, float]:
    """Raise ``DiskFull`` when ``free`` is below ``min_free_bytes``; else a warning (or "") when
    it lasts less than ``warn_free_hours`` at ``byte_rate`` and less than half as long as at the
    last warning (``warned_hours``), and the hours to remember for the next check."""
    if min_free_bytes and free < min_free_bytes:
        raise DiskFull(f"{path}: disk almost full ({size_text(free)} free, below the "
                       f"{size_text(min_free_bytes)} reserve)")
    if byte_rate <= 0:
        return "", warned_hours
    hours = (free - min_free_bytes) / byte_rate / 3600.0
    if hours < warn_free_hours and hours < 0.5 * warned_hours:
        return (f"{path}: {size_text(free)} free on its disk, about "
                f"{duration_text(hours * 3600)} at the current {size_text(byte_rate)}/s; "
                f"the recording stops when less than {size_text(min_free_bytes)} is left",
                hours)
    return "", warned_hours


def stream_byte_rate(spec: StreamSpec) -> float:
    """Uncompressed bytes per second a stream adds to the file (samples and timestamps)."""
    if spec.nominal_srate <= 0:
        return 0.0
    item = 16 if spec.is_string else np.dtype(spec.dtype).itemsize
    return spec.nominal_srate * (spec.channel_count * item + 8)


def make_ballast(path: Path, size: int) -> None:
    """A file of ``size`` bytes with its disk blocks allocated (raises OSError if no room)."""
    if size <= 0:
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError as err:
            if err.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise
            os.write(fd, bytes(size))     # filesystems without fallocate
    except OSError:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)


def saved_summary(path: Path) -> str:
    """What a closed session holds, in words: samples and seconds per stream."""
    with SessionReader(path) as r:
        parts = []
        for key in r.keys:
            ts = r.h5["streams"][key]["time_stamps"]
            n = min(ts.shape[0], r.h5["streams"][key]["time_series"].shape[0])
            dur = float(ts[n - 1] - ts[0]) if n > 1 else 0.0
            parts.append(f"{key} {n} samples ({dur:.1f} s)")
    return "kept " + (", ".join(parts) if parts else "no samples")


def size_text(n: float) -> str:
    """Bytes in words (B, KiB, MiB, GiB)."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def duration_text(s: float) -> str:
    """Seconds in words (s, min, h)."""
    s = max(0.0, s)
    return f"{s:.0f} s" if s < 120 else (f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h")
