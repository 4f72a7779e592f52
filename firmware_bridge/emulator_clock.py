"""The emulated device's clock: what its microsecond counter reads, across STOP/START pauses,
rate changes and reboots, and when (monotonic time) each instant of the twin is due.

Two timelines meet here. The twin (emulator_twin.py) works in *true time* ``t``: seconds of
streamed motion since streaming began, restarting at 0 when a new rate re-creates the twin;
its samples come stamped with a base device time ``base_us + us(t)`` (plus the sensor model's
timestamp jitter). The device clock runs ``rate = 1 + drift_ppm * 1e-6`` device seconds per
true second, always, streaming or not; so while streaming it reads
``base_us + us(now - anchor) + adj_us``, ``anchor`` being the monotonic time of true time 0,
and a sample is sent stamped with its base stamp + ``adj_us`` (``offset_us()``). Each verb
keeps the reading continuous by moving ``adj_us`` (and ``anchor``):

    clock = EmulatorClock(drift_ppm=100, base_us=BOOT_US)
    clock.hold(now)                    # booted, not streaming: the counter runs on
    clock.resume(now, t_next, period)  # START: instant t_next is due one period from now
    clock.sent(t)                      # the instant at true time t went out
    clock.pause(now)                   # STOP: reads on from where it was
    clock.rebase()                     # a new rate: the twin's timeline restarts at t = 0
    clock.restart(t, BOOT_US)          # reboot: true time t reads BOOT_US
    clock.read_us(now), clock.due(t), clock.us(seconds)

``drift_factor`` is the one place the crystal error becomes a rate (the twin's sample grid
uses it too). The emulator (emulator.py) owns one clock and calls these verbs from its
command handler and its pacing loop; the clock never reads the time itself.
"""

from __future__ import annotations

BOOT_US = 150_000
"""Device time (us since boot) at which a freshly (re)booted device takes its first sample."""


def drift_factor(drift_ppm: float) -> float:
    """Device seconds per true second of a crystal ``drift_ppm`` fast (negative: slow)."""
    return 1.0 + drift_ppm * 1e-6


def first_sample_us(clock_offset_us: float | None) -> float:
    """Device time of the first sample: ``clock_offset_us``, or BOOT_US when None."""
    return float(BOOT_US if clock_offset_us is None else clock_offset_us)


class EmulatorClock:
    """The device's microsecond counter (see the module docstring). Times passed in (``now``)
    are monotonic seconds; true times (``t``) are seconds on the twin's timeline."""

    def __init__(self, drift_ppm: float, base_us: float) -> None:
        self.rate = drift_factor(drift_ppm)
        """Device seconds per true second."""
        self.base_us = float(base_us)
        """Device time the twin's stamps start from (its first sample's, before any pause)."""
        self.adj_us = 0.0
        """Device time added to the twin's stamps by pauses, rate changes and reboots."""
        self.anchor = 0.0
        """Monotonic time of true time 0 while streaming."""
        self.running = False
        """Whether the device streams (instants are due at ``due(t)``)."""
        self.paused_at: float | None = None
        """Monotonic time streaming stopped (None: never started nor booted)."""
        self.t_sent = 0.0
        """True time of the last instant sent."""

    def us(self, seconds: float) -> float:
        """Device microseconds that pass in ``seconds`` of true time."""
        return seconds * 1e6 * self.rate

    def read_us(self, now: float) -> int:
        """The counter at monotonic time ``now`` (us since boot)."""
        if self.running:
            return int(self.base_us + self.us(now - self.anchor) + self.adj_us)
        paused = now - (self.paused_at if self.paused_at is not None else now)
        return int(self.base_us + self.us(self.t_sent) + self.adj_us + self.us(paused))

    def offset_us(self) -> int:
        """What to add to the twin's base stamps to get the device time sent."""
        return int(round(self.adj_us))

    def due(self, t: float) -> float:
        """Monotonic time at which the instant at true time ``t`` is sampled (streaming)."""
        return self.anchor + t

    def hold(self, now: float) -> None:
        """Not streaming from ``now`` (a boot): the counter reads on from ``t_sent``."""
        self.running = False
        self.paused_at = now

    def pause(self, now: float) -> None:
        """Stop streaming at ``now``, the counter reading on from what it reads now."""
        self.adj_us += self.us(now - self.anchor - self.t_sent)
        self.hold(now)

    def resume(self, now: float, t_next: float, period: float) -> None:
        """Stream again: the counter keeps what it ran while paused, and the instant at true
        time ``t_next`` is due ``period`` from ``now`` (the sample timer's first tick)."""
        if self.paused_at is not None:
            self.adj_us += self.us(now - self.paused_at)
        self.paused_at = None
        self.anchor = now + period - t_next
        self.running = True

    def sent(self, t: float) -> None:
        """The instant at true time ``t`` went out."""
        self.t_sent = t

    def rebase(self) -> None:
        """The twin's timeline restarts at true time 0 (a new rate, while not streaming); the
        counter must not: what it ran so far moves into ``adj_us``."""
        self.adj_us += self.us(self.t_sent)
        self.t_sent = 0.0

    def restart(self, t: float, at_us: float = BOOT_US) -> None:
        """A reboot: from now on the instant at true time ``t`` reads ``at_us``."""
        self.adj_us = at_us - (self.base_us + self.us(t))
