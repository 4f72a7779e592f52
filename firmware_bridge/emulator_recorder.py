"""The emulator's truth recorder: what it generated and what became of each message, and the
twin's ground truth as it streams (published on the LSL ``Blendshapes`` outlet when asked).

The emulator (emulator.py) tells it, per SAMPLES frame, what the frame held and whether it
went out (``new_frame`` before sending, ``took`` when the link accepted a message, ``refused``
when it did not, ``keep_frame`` after), and per streamed instant which truth frames are due
(``publish``). When a cable pull closes the link, ``unread(n)`` marks the messages behind the
last ``n`` bytes the host never read as not delivered. ``log(...)`` assembles a ``TruthLog``
(emulator_truth.py) from all of it. Truth frames are stamped in LSL time from the monotonic
clock the emulator paces by, through ``lsl_minus_monotonic()`` (bracketed reads, so that a
preemption between two clock reads on a loaded machine does not shift the whole truth).
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import numpy as np

from imusic.firmware_bridge import protocol as P
from imusic.firmware_bridge.emulator_truth import TruthLog, truth_outlet
from imusic.firmware_bridge.emulator_twin import TwinChunk

IN_LINK_MAX = 8192
"""Messages remembered as possibly still in the link (a pty holds at most 64 KiB pending plus
its 4 KiB input queue, and the smallest message is over 8 bytes)."""
FLAGS = ("sent", "lost", "corrupted", "tx_dropped")
"""Per-instant outcomes in a TruthLog."""


class TruthRecorder:
    """Frame records, truth frames and the messages possibly still in the link (see the
    module docstring). With ``keep`` False only the counters and the outlet are kept."""

    def __init__(self, keep: bool) -> None:
        self.keep = keep
        """Keep every frame record and truth frame for ``log``."""
        self.tx_dropped = 0
        """Messages of any kind that never reached the host (the STATUS counter)."""
        self.outlet: Any = None
        """The LSL Blendshapes outlet, once ``open_outlet`` made it."""
        self._truth_i = 0                # next truth frame of the current chunk
        self._lsl_minus_mono = 0.0
        self._frames: list[dict[str, Any]] = []
        self._truth: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._in_link: deque[tuple[int, bool, dict | None]] = deque(maxlen=IN_LINK_MAX)
        """(bytes, is SAMPLES, its record or None) of each message the link took, newest last."""

    # ---- messages and the link -----------------------------------------------------------

    def new_frame(self) -> dict | None:
        """A record for the SAMPLES frame about to be sent (None: records not kept)."""
        return {} if self.keep else None

    def took(self, nbytes: int, record: dict | None = None, samples: bool = False) -> None:
        """The link took a message of ``nbytes`` (a SAMPLES frame: ``samples``, its record)."""
        self._in_link.append((nbytes, samples, record))

    def refused(self) -> None:
        """The link refused a message (down): it never reaches the host."""
        self.tx_dropped += 1

    def unread(self, nbytes: int) -> int:
        """The last ``nbytes`` the link took never reached the host (a pulled cable discards
        what is in flight): mark those messages not delivered; returns how many were SAMPLES
        frames. The next link starts empty."""
        frames = 0
        while nbytes > 0 and self._in_link:
            n, samples, rec = self._in_link.pop()
            nbytes -= n
            self.tx_dropped += 1
            frames += samples
            if rec is not None:
                rec["sent"], rec["tx_dropped"] = False, True
        self._in_link.clear()
        return frames

    def keep_frame(self, record: dict | None, **fields: Any) -> None:
        """File a frame's record with what it held and became (``seq``, ``n``, ``stamps``,
        ``t``, ``boot_id``, ``blocks`` and the FLAGS)."""
        if self.keep:
            rec = {} if record is None else record
            rec.update(fields)
            self._frames.append(rec)

    # ---- ground truth --------------------------------------------------------------------

    def open_outlet(self, **desc: Any) -> None:
        """Make the LSL Blendshapes outlet (``truth_outlet``'s arguments)."""
        import pylsl

        self.outlet = truth_outlet(**desc)
        self._lsl_minus_mono = lsl_minus_monotonic()

    def new_chunk(self) -> None:
        """The emulator moved to a new twin chunk: its truth frames start at 0."""
        self._truth_i = 0

    def publish(self, chunk: TwinChunk, t_now: float, anchor: float) -> int:
        """Truth frames of ``chunk`` up to true time ``t_now``, stamped with the LSL time they
        happened at (``anchor``: the monotonic time of true time 0); returns how many."""
        j0 = self._truth_i
        j1 = int(np.searchsorted(chunk.truth_t, t_now, side="right"))
        if j1 <= j0:
            return 0
        self._truth_i = j1
        stamps = anchor + self._lsl_minus_mono + chunk.truth_t[j0:j1]
        if self.keep:
            self._truth.append((chunk.truth_t[j0:j1].copy(), chunk.truth[j0:j1], stamps))
        if self.outlet is not None:
            self.outlet.push_chunk(np.ascontiguousarray(chunk.truth[j0:j1]), stamps.tolist())
        return j1 - j0

    def close(self) -> None:
        """Drop the outlet."""
        self.outlet = None

    # ---- the log -------------------------------------------------------------------------

    def log(self, n_sites: int, blocks: tuple[str, ...], scales: dict[str, float]) -> TruthLog:
        """Everything recorded so far, one row per instant (``blocks``: the quantities sent,
        for the shape of an empty log; ``scales``: counts to SI per quantity)."""
        recs = self._frames
        if recs:
            seq = np.concatenate([(r["seq"] + np.arange(r["n"])) % P.SEQ_MOD for r in recs])
            per = lambda key: np.concatenate([np.full(r["n"], r[key]) for r in recs])  # noqa: E731
            counts = {q: np.concatenate([r["blocks"][q] for r in recs]) for q in recs[0]["blocks"]}
            dev = np.concatenate([r["stamps"] for r in recs])
            t = np.concatenate([r["t"] for r in recs])
            flags = {k: per(k).astype(bool) for k in FLAGS}
            boot = per("boot_id").astype(np.int64)
        else:
            seq = dev = boot = np.zeros(0, np.int64)
            t = np.zeros(0)
            counts = {q: np.zeros((0, n_sites, 4 if q == "quat" else 3), np.int16) for q in blocks}
            flags = {k: np.zeros(0, bool) for k in FLAGS}
        if self._truth:
            bt = np.concatenate([x[0] for x in self._truth])
            bv = np.concatenate([x[1] for x in self._truth])
            bl = np.concatenate([x[2] for x in self._truth])
        else:
            bt, bv, bl = np.zeros(0), np.zeros((0, 61), np.float32), np.zeros(0)
        scales = dict(scales)
        scales["quat"] = P.QUAT_SCALE
        return TruthLog(seq=seq.astype(np.int64), device_us=dev, t=t, boot_id=boot,
                        counts=counts, scales=scales, blendshape_t=bt, blendshapes=bv,
                        blendshape_lsl=bl, **flags)


def lsl_minus_monotonic(tries: int = 9) -> float:
    """``pylsl.local_clock() - time.monotonic()``, read so that a preemption between the two
    reads (tens of ms on a loaded machine) cannot shift it: of ``tries`` readings of the LSL
    clock each bracketed by two monotonic ones, the one with the tightest bracket, against
    the bracket's middle."""
    import pylsl

    best = (float("inf"), 0.0)
    for _ in range(tries):
        m0 = time.monotonic()
        lsl = pylsl.local_clock()
        m1 = time.monotonic()
        best = min(best, (m1 - m0, lsl - 0.5 * (m0 + m1)))
    return best[1]

