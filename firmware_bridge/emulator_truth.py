"""The emulator's ground truth: the log of every instant it generated (``TruthLog``) and the
LSL ``Blendshapes`` outlet of the twin's blendshapes (``truth_outlet``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class TruthLog:
    """Everything the emulator generated, one row per sample instant, in order.

    ``sent`` is True where the instant left in a frame that was neither dropped (``lost``,
    ``--loss``), nor ``corrupted``, nor refused by the link or lost in it (``tx_dropped``:
    sent while unplugged, or still unread in the pty when a pull closed it). ``counts`` holds
    exactly the blocks the device put on the wire (``acc`` always; ``gyro``, ``mag``, ``quat``
    as its flags say); ``acc/gyro/mag/quat`` are their values exactly as the counts encode
    them (counts × scale: SI in sensor frames; quaternions w, x, y, z, sensor-to-earth, as the
    on-device fusion made them), or None for a block the device does not send.
    ``blendshapes`` (F, 61) with ``blendshape_t`` (true s) and ``blendshape_lsl`` (LSL time
    they were or would have been stamped with) are the twin's ground truth.
    """

    seq: np.ndarray
    device_us: np.ndarray
    t: np.ndarray
    boot_id: np.ndarray
    counts: dict[str, np.ndarray]
    scales: dict[str, float]
    sent: np.ndarray
    lost: np.ndarray
    corrupted: np.ndarray
    tx_dropped: np.ndarray
    blendshape_t: np.ndarray
    blendshapes: np.ndarray
    blendshape_lsl: np.ndarray

    @property
    def acc(self) -> np.ndarray:
        """Specific force (N, S, 3) m/s²."""
        return self.counts["acc"] * self.scales["acc"]

    @property
    def gyro(self) -> np.ndarray | None:
        """Angular rate (N, S, 3) rad/s (None: not sent)."""
        return self._block("gyro")

    @property
    def mag(self) -> np.ndarray | None:
        """Magnetic field (N, S, 3) µT (None: not sent)."""
        return self._block("mag")

    @property
    def quat(self) -> np.ndarray | None:
        """On-device orientation (N, S, 4) w, x, y, z as sent (None: a raw device)."""
        return self._block("quat")

    def _block(self, q: str) -> np.ndarray | None:
        c = self.counts.get(q)
        return None if c is None else c * self.scales[q]


def truth_outlet(name: str, source_id: str, fps: float, rig: str, serial: str, motion: str):
    """An LSL outlet for the twin's ground truth: type ``Blendshapes``, the 61 STREAM_NAMES
    channels of ``streams.blendshapes_info`` (52 ARKit coefficients, then head and eye pose),
    ``desc/source`` = ``twin``, with the rig, device serial and motion it came from."""
    import pylsl

    from imusic.firmware_bridge.streams import blendshapes_info

    info = blendshapes_info(name, "twin", source_id, rate_hz=fps,
                            extra={"rig": rig, "device_serial": serial, "motion": motion})
    return pylsl.StreamOutlet(info, chunk_size=1)
