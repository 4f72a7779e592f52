"""How the writer lays out sample datasets: chunks written once, whole.

Part of the session file package (``capture/session.py`` says how the pieces fit). A
compressed HDF5 chunk written part full and later fuller is stored anew each time, and under
SWMR the old copy's space is not reused. So ``SessionWriter`` keeps each sample dataset's
newest rows here (``PendingRows``) until they fill a chunk of ``chunk_rows`` rows
(``WriteLimits.chunk_s`` of samples), and writes part-filled chunks only for rows that have
waited ``WriteLimits.hold_s`` or at close.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from imusic.capture.session_schema import StreamSpec


@dataclass(frozen=True)
class WriteLimits:
    """How the writer lays out and writes the sample datasets (defaults: what the recorder uses)."""

    chunk_s: float = 0.25
    """Seconds of samples per chunk of time_series and time_stamps (at the nominal rate)."""
    min_chunk_rows: int = 16
    """Fewest rows per chunk (and the chunk of irregular streams is 4x this)."""
    max_chunk_bytes: int = 1 << 20
    """Most bytes per time_series chunk (uncompressed), for streams with many channels."""
    hold_s: float = 0.4
    """Rows that have waited this long for their chunk to fill are written part filled."""
    max_pending_chunks: int = 64
    """Write whole chunks at once when this many are waiting (bulk appends: imports)."""
    chunk_cache_bytes: int = 0
    """HDF5's chunk cache per dataset (its default is 1 MiB): whole chunks are written
    straight through it, so the writer needs none."""
    reopen_wait_s: float = 5.0
    """How long the writer retries reopening the file when a stream joins late while a reader
    in another process has it open (HDF5's file lock refuses the reopen until it lets go)."""
    reopen_retry_s: float = 0.02
    """Pause between those tries."""


WRITE_LIMITS = WriteLimits()


def chunk_rows(spec: "StreamSpec", limits: WriteLimits = WRITE_LIMITS) -> int:
    """Rows per chunk of a stream's time_series and time_stamps."""
    itemsize = 16 if spec.is_string else np.dtype(spec.dtype).itemsize
    rows = (int(np.ceil(spec.nominal_srate * limits.chunk_s)) if spec.nominal_srate > 0
            else 4 * limits.min_chunk_rows)
    cap = max(limits.min_chunk_rows, limits.max_chunk_bytes // (spec.channel_count * itemsize))
    return int(min(max(limits.min_chunk_rows, rows), cap))


class PendingRows:
    """Rows of one sample dataset that wait in memory for their chunk to fill."""

    __slots__ = ("parts", "times", "rows")

    def __init__(self) -> None:
        self.parts: list[np.ndarray] = []
        self.times: list[float] = []     # monotonic time each part came
        self.rows = 0

    def came(self, row: int) -> float:
        """When the waiting row ``row`` (0 = the oldest) came."""
        for part, t in zip(self.parts, self.times):
            if row < len(part):
                return t
            row -= len(part)
        return self.times[-1]
