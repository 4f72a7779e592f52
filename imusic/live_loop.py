"""The one live loop: IMU rows in, published blendshape frames out, and what it measured.

:class:`LiveLoop` is the only place live frames are made. Whoever delivers IMU rows calls
:meth:`LiveLoop.push` (the rows, their LSL timestamps, the stream's channel labels) and then
:meth:`LiveLoop.publish_ready`, which runs the model on every 60 Hz tick the data now covers
(``model.runtime.Runtime.frames``) and publishes each frame as soon as it is made (when one pull
completes two ticks, the first is out before the second is computed): on the predictions'
``Blendshapes`` LSL outlet, as a Live Link Face packet, to the ``on_frame`` hook (the hybrid's
fuser, the demo's score). ``imusic.pipelines`` calls it from the thread that pulls an IMU inlet, or from the model
thread a device session's samples are queued to.

Each output frame carries the head pose of the instant it describes: every runtime tick feeds
the reference sensor's signals to ``model.headpose.HeadPose`` (``_on_tick``).

:class:`LiveStats` keeps counts and three latencies per frame in bounded memory
(:class:`LatencyRecord`: a fixed-bin histogram for the run's percentiles, the last values for a
live line), so an all-day run costs the same as a minute.

The model (``model.runtime``, which imports torch) is imported here at the top: nothing imports
this module without running the model.
"""

from __future__ import annotations

import sys
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pylsl

from imusic.capture.arkit_bridge import UdpSender
from imusic.capture.livelink import LiveLinkPacket, frame_time_fields
from imusic.firmware_bridge.device import DeviceError
from imusic.firmware_bridge.streams import blendshapes_info, parse_label
from imusic.model.headpose import HeadPose, HeadPoseConfig, HeadTrack
from imusic.model.runtime import MissingChannels, Runtime, stream_values

HEAD_POSE_IMU = ("reference IMU (model.headpose: orientation relative to the neutral pose "
                 "found in the first still seconds; zeros until then)")
"""``desc/head_pose`` of a stream whose head yaw/pitch/roll come from the reference sensor."""


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class LatencyConfig:
    """Resolution and reach of a :class:`LatencyRecord`."""

    bin_ms: float = 0.1
    """Histogram bin width: the percentiles' resolution."""
    max_ms: float = 2000.0
    """Top of the histogram; slower values count in one overflow bin (the max stays exact)."""
    recent: int = 120
    """Values kept as they are, for a live line (2 s of 60 Hz frames)."""


class LatencyRecord:
    """One latency over a whole run in bounded memory: counts in ``bin_ms`` bins up to
    ``max_ms`` (160 kB with the defaults, whatever the run's length) for percentiles, the
    exact maximum, and the last ``recent`` values."""

    def __init__(self, config: LatencyConfig = LatencyConfig()) -> None:
        self.config = config
        self.counts = np.zeros(int(np.ceil(config.max_ms / config.bin_ms)) + 1, np.int64)
        """Values per bin; the last bin holds every value at or above ``max_ms``."""
        self.n = 0
        self.max_ms = float("nan")
        self.recent: deque[float] = deque(maxlen=config.recent)

    def add(self, ms: float) -> None:
        """Count one value (milliseconds; a negative one counts as 0)."""
        self.recent.append(ms)
        ms = max(ms, 0.0)
        k = min(int(ms / self.config.bin_ms), len(self.counts) - 1)
        self.counts[k] += 1
        self.n += 1
        if not self.max_ms >= ms:   # NaN before the first value
            self.max_ms = ms

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile (0..100): the middle of the bin it falls in, never above the
        maximum seen; NaN before any value."""
        if not self.n:
            return float("nan")
        rank = max(1, int(np.ceil(q / 100.0 * self.n)))
        k = int(np.searchsorted(np.cumsum(self.counts), rank))
        return float(min((k + 0.5) * self.config.bin_ms, self.max_ms))

    def recent_median(self) -> float | None:
        """The median of the last ``recent`` values (None before any)."""
        return float(np.median(self.recent)) if self.recent else None


class LiveStats:
    """What the live loop measured (see the module docstring)."""

    LATENCIES = ("compute", "motion_to_output", "frame_delay", "handoff")
    """The latencies kept per frame, as :class:`LatencyRecord` attributes of these names:
    model compute (features + sampling); publish time minus the time of the newest IMU sample
    the frame used (LSL clock); publish time minus the instant the frame describes (adds the
    model's look-ahead); how long the newest samples waited between their source and the
    model (the device session's queue to the model thread; 0 where the puller computes)."""

    def __init__(self, config: LatencyConfig = LatencyConfig()) -> None:
        self.frames = 0
        self.samples = 0
        self.skipped = 0
        """Frames dropped because the model fell behind (see ``LiveLoop.max_behind_s``)."""
        self.compute = LatencyRecord(config)
        self.motion_to_output = LatencyRecord(config)
        self.frame_delay = LatencyRecord(config)
        self.handoff = LatencyRecord(config)

    def summary(self) -> dict[str, float]:
        """Counts, and p50/p95/p99/max of each latency (``<name>_p50_ms`` ...)."""
        out: dict[str, float] = {"frames": self.frames, "samples": self.samples,
                                 "skipped": self.skipped}
        for name in self.LATENCIES:
            rec: LatencyRecord = getattr(self, name)
            for q in (50, 95, 99):
                out[f"{name}_p{q}_ms"] = rec.percentile(q)
            out[f"{name}_max_ms"] = rec.max_ms
        return out


class ChannelMismatch(DeviceError, LookupError):
    """The model needs IMU channels the stream does not have (one clear line: ``str(err)``)."""


def stream_quantities(labels: list[str]) -> list[str]:
    """The quantities an IMU stream's ``site.quantity.axis`` labels carry, in stream order."""
    out: list[str] = []
    for parsed in map(parse_label, labels):
        if parsed is not None and parsed[1] not in out:
            out.append(parsed[1])
    return out


def model_layout(labels: list[str], runtime: Any, stream: str = "", model: Any = None) -> Any:
    """The runtime's ``ChannelLayout`` on a stream's labels, or ChannelMismatch saying in one
    line which channels the checkpoint's features need that the stream lacks (an orientation
    device that sends no gyro to a raw-feature model, a raw device to a model trained on
    reported orientation, a 6-axis device, another rig), and what to do."""
    try:
        return runtime.layout(labels)
    except MissingChannels as err:
        have = stream_quantities(labels)
        if err.quantity in have:
            raise ChannelMismatch(str(err)) from None   # another rig: the layout's own words
        where = f"IMU stream {stream}" if stream else "the IMU stream"
        raise ChannelMismatch(
            f"the model ({model or 'the bundled checkpoint'}) needs channels "
            f"{err.channels} that {where} does not have (it sends "
            f"{'+'.join(have) or 'nothing'} per site): train a checkpoint on sessions recorded "
            f"from this device (imusic record, then imusic train), or use a device that sends "
            f"{err.quantity}") from None


class LiveLoop:
    """The model on IMU rows, publishing every frame (see the module docstring).

    ``on_frame(frame, publish_time)`` is called for every output frame, on the thread that
    called :meth:`publish_ready`."""

    def __init__(self, runtime: Runtime, name: str = "imusic-model",
                 livelink: tuple[str, int] | None = None,
                 on_frame: Callable[[Any, float], None] | None = None,
                 publish: bool = True, model_path: Any = None,
                 max_behind_s: float = 0.25) -> None:
        self.runtime = runtime
        self.name = name
        self.livelink = livelink
        self.on_frame = on_frame
        self.publish = publish
        self.model_path = model_path
        """The checkpoint given (None: the bundled one), for messages."""
        self.max_behind_s = max_behind_s
        """A machine too slow for the model drops frames older than this, instead of lagging."""
        self.stats = LiveStats()
        self._calibration_said = runtime.calibration.done
        """True once the neutral-pose calibration line has been printed (or none is needed)."""
        self._recalibrate = threading.Event()
        self._recalibrate_why = ""
        self.head = HeadPose(HeadPoseConfig(rate_hz=runtime.rate))
        """The reference sensor's head pose, fed every tick by the runtime (``_on_tick``)."""
        self.head_track = HeadTrack()
        """Head poses by tick time: an output frame takes the pose of the instant it describes."""
        self._ref = runtime.sites.index(runtime.spec.reference)
        runtime.on_tick = self._on_tick
        self._layout: Any = None
        self._newest = float("nan")
        self.say: Callable[[str], None] = _to_stderr
        """Where the calibration lines go (a command sets its runner's ``say``, which ends an
        in-place status line first)."""
        self._skipped_seen = 0
        """``runtime.skipped`` when last counted into ``stats`` (stats may be replaced)."""
        self._handed_at: float | None = None
        self._outlet: Any = None
        self._sender: UdpSender | None = None

    def open(self) -> None:
        """Open the outputs: the predictions' LSL outlet (unless ``publish`` is False) and the
        Live Link sender."""
        if self.publish:
            rt = self.runtime
            info = blendshapes_info(self.name, "imusic-model", f"{self.name}-predictions",
                                    rate_hz=rt.rate,
                                    extra={"checkpoint": str(rt.trained.path),
                                           "ddim_steps": rt.steps,
                                           "head_pose": HEAD_POSE_IMU,
                                           "delay_s": f"{rt.delay_s:.4f}",
                                           "camera": "none"})
            self._outlet = pylsl.StreamOutlet(info)
        if self.livelink is not None:
            self._sender = UdpSender(*self.livelink)

    def close(self) -> None:
        """Close the outputs."""
        if self._sender is not None:
            self._sender.close()
            self._sender = None
        self._outlet = None

    def _on_tick(self, t: float, sig: Any) -> None:
        """The runtime's tick: advance the head pose on the reference's signals."""
        if sig is None:
            return
        acc, gyro, mag, quat = (np.asarray(x)[self._ref] for x in sig)
        if np.all(np.isfinite(gyro)) or not np.all(np.isfinite(quat)):
            pose = self.head.update(acc, gyro, mag)
        else:   # an orientation wearable without gyro: its own fusion's quaternion
            pose = self.head.update_quat(quat, has_magnetometer=bool(np.all(np.isfinite(mag))))
        self.head_track.add(t, pose)

    def check_layout(self, labels: list[str], stream: str = "") -> None:
        """Find the model's channels among a stream's ``labels`` (once: a stream keeps its
        channels); ChannelMismatch when it lacks some, naming ``stream`` in that line."""
        if self._layout is None:
            self._layout = model_layout(labels, self.runtime, stream, self.model_path)

    def push(self, rows: np.ndarray, timestamps: np.ndarray, labels: list[str],
             stream: str = "", handed_at: float | None = None) -> None:
        """Add IMU rows, channels found by ``labels`` (:meth:`check_layout`); ``handed_at``:
        the LSL time their source handed them on (None: now, on this thread)."""
        self.check_layout(labels, stream)
        ts = np.asarray(timestamps, np.float64)
        self.runtime.push_rows(np.asarray(rows, np.float64), ts, self._layout)
        self.stats.samples += len(ts)
        if len(ts):
            self._newest = float(ts[-1])
            self._handed_at = handed_at

    def request_recalibration(self, why: str) -> None:
        """Take the neutral pose again (any thread): the model thread starts over before its
        next frame; ``why`` goes into the line it prints."""
        self._recalibrate_why = why
        self._recalibrate.set()

    def _recalibrate_if_asked(self) -> None:
        if not self._recalibrate.is_set():
            return
        self._recalibrate.clear()
        self.runtime.recalibrate()
        self.head = HeadPose(HeadPoseConfig(rate_hz=self.runtime.rate))
        self._calibration_said = self.runtime.calibration.done
        self.say(f"imusic: recalibrating the neutral pose ({self._recalibrate_why}): hold a "
                 "neutral face and keep still")

    def publish_ready(self) -> int:
        """Make and publish every frame the pushed data covers; the number published."""
        self._recalibrate_if_asked()
        n = 0
        st = self.stats
        started = pylsl.local_clock()
        handoff_ms = 0.0 if self._handed_at is None else (started - self._handed_at) * 1000
        # Each frame is published as soon as it is made (``Runtime.frames``): when one pull
        # completes two ticks, the first does not wait for the second's compute.
        for frame in self.runtime.frames(max_behind_s=self.max_behind_s):
            values = stream_values(frame.blendshapes, self.head_track.at(frame.t))
            if self._outlet is not None:
                self._outlet.push_sample(values, frame.t)
            now = pylsl.local_clock()
            if self._sender is not None:
                number, sub, num, den = frame_time_fields(frame.t)
                self._sender.send(LiveLinkPacket(
                    device_id="imusic", subject=self.name, frame_number=number,
                    sub_frame=sub, rate_numerator=num, rate_denominator=den,
                    values=np.asarray(values, np.float32)))
            st.frames += 1
            st.compute.add(frame.latency_s * 1000)
            st.motion_to_output.add((now - self._newest) * 1000)
            st.frame_delay.add((now - frame.t) * 1000)
            st.handoff.add(handoff_ms)
            n += 1
            if self.on_frame is not None:
                self.on_frame(frame, now)
        st.skipped += self.runtime.skipped - self._skipped_seen   # since these stats began
        self._skipped_seen = self.runtime.skipped
        if not self._calibration_said and self.runtime.calibration.done:
            self._calibration_said = True
            self.say(f"imusic: neutral pose calibrated ({self.runtime.calibration.describe()}); "
                     "output frames are valid from here")
        return n
