"""The faults an emulator injects (``imusic emulate --loss --corrupt --send-jitter-ms
--disconnect-every --disconnect-for --reboot-at``), as one schedule the emulator consults as
it sends each SAMPLES frame (emulator.py):

    faults = FaultSchedule(cfg, rng)
    faults.reboot_due(t_last)      # once, when the stream reaches ``reboot_at``
    faults.pull_due(t_last)        # the true time a scheduled cable pull is due, or None
    faults.send_delay()            # how late this frame leaves (s)
    faults.drop()                  # drop this frame before it is sent (``loss``)
    faults.corrupt(frame)          # (frame with bytes flipped, how many)

Times are true streaming seconds (the twin's timeline). The random draws come from the
emulator's own generator, in the order it sends, so that a seed gives the same faults run after
run; a fault that is off draws nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from imusic.firmware_bridge.emulator_config import EmulatorConfig


class FaultSchedule:
    """Which frames are dropped, corrupted or late, and when the link drops and the device
    reboots (see the module docstring)."""

    def __init__(self, cfg: "EmulatorConfig", rng: np.random.Generator) -> None:
        self.loss = float(cfg.loss)
        """Fraction of SAMPLES frames dropped before sending."""
        self.corrupt_p = float(cfg.corrupt)
        """Probability that each sent byte is flipped."""
        self.send_jitter_s = float(cfg.send_jitter_ms) * 1e-3
        """Each frame leaves up to this much late (uniform)."""
        self.reboot_at = cfg.reboot_at
        """Streaming seconds at which the device reboots (None: never)."""
        self.pull_every = cfg.disconnect_every
        """Streaming seconds between link drops (None: never)."""
        self.pull_for = float(cfg.disconnect_for)
        """How long a dropped link stays down (s)."""
        self.next_pull: float | None = cfg.disconnect_every
        """True time of the next link drop."""
        self.rebooted = False
        """Whether the scheduled reboot happened."""
        self._rng = rng

    def reboot_due(self, t: float) -> bool:
        """True once: when the instant at true time ``t`` is at or past ``reboot_at``."""
        if self.reboot_at is None or self.rebooted or t < self.reboot_at:
            return False
        self.rebooted = True
        return True

    def pull_due(self, t: float) -> float | None:
        """The true time of a link drop due by the instant at ``t`` (and the next one is
        scheduled), or None."""
        if self.next_pull is None or t < self.next_pull:
            return None
        at = self.next_pull
        self.next_pull += self.pull_every
        return at

    def send_delay(self) -> float:
        """How late this frame leaves its due time (s)."""
        if self.send_jitter_s <= 0:
            return 0.0
        return float(self._rng.uniform(0, self.send_jitter_s))

    def drop(self) -> bool:
        """Whether this frame is dropped before it is sent."""
        return self.loss > 0 and bool(self._rng.random() < self.loss)

    def corrupt(self, frame: bytes) -> tuple[bytes, int]:
        """``frame`` with each byte flipped (XOR with 1..255) with probability ``corrupt_p``,
        and the number of bytes flipped."""
        if self.corrupt_p <= 0:
            return frame, 0
        flips = np.flatnonzero(self._rng.random(len(frame)) < self.corrupt_p)
        if not len(flips):
            return frame, 0
        buf = np.frombuffer(frame, np.uint8).copy()
        buf[flips] ^= self._rng.integers(1, 256, len(flips), dtype=np.uint8)
        return buf.tobytes(), len(flips)
