"""The pipelines that compose the parts: live capture, hybrid tracking, the demo.

``LivePipeline``: IMU samples (a wearable through a transport and a device session, or an IMU
LSL stream) -> the streaming model runtime -> an LSL ``Blendshapes`` stream of predictions,
and optionally Live Link Face packets out, a viewer, a recording. The model runs in its own
thread fed by a queue, so a slow frame never holds up the device link; nothing in this path
opens a camera.

``HybridPipeline`` adds ARKit (Live Link Face packets or an LSL ``Blendshapes`` stream) and the
per-region fuser (``model.fusion``), publishing the fused stream and a per-region state stream.

Head pose: the runtime hands every tick's interpolated signals to ``model.headpose.HeadPose``
(the reference sensor's orientation relative to the neutral pose at the start), and each output
frame carries the pose of the instant it describes in ``headYaw/headPitch/headRoll`` (stream and
Live Link packets). The hybrid prefers ARKit's own head pose on frames where it is non-zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sys
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from firmware_bridge.device import DeviceError
from hardware.vocabulary import N_BLENDSHAPES

FUSION_STATE_TYPE = "FusionState"
"""LSL type of the hybrid's per-region state stream."""

HEAD_POSE_IMU = ("reference IMU (model.headpose: orientation relative to the neutral pose "
                 "found in the first still seconds; zeros until then)")
"""``desc/head_pose`` of a stream whose head yaw/pitch/roll come from the reference sensor."""
HEAD_POSE_HYBRID = ("arkit on frames where ARKit's head yaw/pitch/roll are non-zero, else the "
                    + HEAD_POSE_IMU)
"""``desc/head_pose`` of the hybrid's fused stream."""


@dataclass
class LinkOptions:
    """Where the IMU samples come from: exactly one of serial, udp, ble, lsl."""

    serial: str | None = None
    udp: int | None = None
    udp_host: str = "0.0.0.0"
    ble: str | None = None
    lsl: str | None = None
    """Name or source_id of an IMU LSL stream ('' for the first IMU stream found)."""
    rig: str = "auto"
    baud: int = 921600
    allow: tuple[str, ...] = ()
    """With udp: the only hosts datagrams are accepted from (empty: any)."""
    lsl_settle_s: float = 1.0
    """With a bare ``--lsl`` (no name): seconds spent looking for other IMU streams once one is
    found; with several, none is chosen (the user names one)."""

    def describe(self) -> str:
        """The link in words, for messages."""
        if self.serial:
            return f"serial {self.serial}"
        if self.udp is not None:
            return f"UDP {self.udp_host}:{self.udp}"
        if self.ble:
            return f"BLE {self.ble}"
        return f"LSL IMU stream {self.lsl or '(any)'}"


@dataclass
class LiveStats:
    """What the live pipeline measured."""

    frames: int = 0
    samples: int = 0
    skipped: int = 0
    """Frames dropped because the model fell behind (see ``LivePipeline.max_behind_s``)."""
    compute_ms: list[float] = field(default_factory=list)
    """Model compute time per frame."""
    motion_to_output_ms: list[float] = field(default_factory=list)
    """Publish time minus the time of the newest IMU sample used (LSL clock)."""
    frame_delay_ms: list[float] = field(default_factory=list)
    """Publish time minus the instant the frame describes (includes the look-ahead)."""

    @staticmethod
    def _pct(values: list[float], q: float) -> float:
        return float(np.percentile(values, q)) if values else float("nan")

    def summary(self) -> dict[str, float]:
        """p50/p99 of each latency, and counts."""
        out: dict[str, float] = {"frames": self.frames, "samples": self.samples,
                                 "skipped": self.skipped}
        for name in ("compute_ms", "motion_to_output_ms", "frame_delay_ms"):
            vals = getattr(self, name)
            out[f"{name[:-3]}_p50_ms"] = self._pct(vals, 50)
            out[f"{name[:-3]}_p99_ms"] = self._pct(vals, 99)
        return out


class LivePipeline:
    """IMU in, predicted blendshapes out (see the module docstring).

    ``on_frame(frame, publish_time)`` is called in the model thread for every output frame
    (the hybrid and the demo hook in there).
    """

    def __init__(self, link: LinkOptions, model: str | Path | None = None,
                 steps: int | None = None, name: str = "imusic-model",
                 livelink: tuple[str, int] | None = None,
                 on_frame: Callable[[Any, float], None] | None = None,
                 publish: bool = True, imu_name: str | None = None,
                 max_behind_s: float = 0.25) -> None:
        import torch

        from model.runtime import Runtime

        # One intra-op thread: the per-frame tensors are tiny, and on a busy 2-core machine a
        # second torch thread spinning against capture made a frame 40x slower (measured).
        torch.set_num_threads(1)
        self.link = link
        self.runtime = Runtime.from_checkpoint(model, steps=steps)
        self._calibration_said = self.runtime.calibration.done
        """True once the neutral-pose calibration line has been printed (or none is needed)."""
        self.model_path = model
        """The checkpoint given (None: the bundled one), for messages."""
        self.name = name
        self.imu_name = imu_name
        self.livelink = livelink
        self.on_frame = on_frame
        self.publish = publish
        self.max_behind_s = max_behind_s
        """A machine too slow for the model drops frames older than this, instead of lagging."""
        self.stats = LiveStats()
        from model.headpose import HeadPose, HeadPoseConfig, HeadTrack

        self.head = HeadPose(HeadPoseConfig(rate_hz=self.runtime.rate))
        """The reference sensor's head pose, fed every tick by the runtime (``_on_tick``)."""
        self.head_track = HeadTrack()
        """Head poses by tick time: an output frame takes the pose of the instant it describes."""
        self._ref = self.runtime.sites.index(self.runtime.spec.reference)
        self.runtime.on_tick = self._on_tick
        self.health: Any = None
        self.session: Any = None
        self._queue: queue.Queue[tuple[np.ndarray, np.ndarray, Any] | None] = queue.Queue()
        self._outlet: Any = None
        self._sender: Any = None
        self._layout: Any = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # ------------------------------------------------------------------ model thread
    def _open_outputs(self) -> None:
        import pylsl

        from capture.arkit_bridge import UdpSender, blendshapes_info

        if self.publish:
            info = blendshapes_info(self.name, "imusic-model", f"{self.name}-predictions",
                                    rate_hz=self.runtime.rate,
                                    extra={"checkpoint": str(self.runtime.trained.path),
                                           "ddim_steps": self.runtime.steps,
                                           "head_pose": HEAD_POSE_IMU,
                                           "delay_s": f"{self.runtime.delay_s:.4f}",
                                           "camera": "none"})
            self._outlet = pylsl.StreamOutlet(info)
        if self.livelink is not None:
            self._sender = UdpSender(*self.livelink)

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

    def _model_loop(self) -> None:
        import pylsl

        from capture.livelink import LiveLinkPacket, frame_time_fields
        from model.runtime import stream_values

        while True:
            item = self._queue.get()
            if item is None or self._stopping.is_set():
                return   # on stop, a backlog is dropped rather than computed late
            rows, ts, layout = item
            self.runtime.push_rows(rows, ts, layout)
            self.stats.samples += len(ts)
            # Take in everything already waiting, so a backlog is seen (and skipped) at once.
            while True:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)
                    break
                self.runtime.push_rows(more[0], more[1], more[2])
                self.stats.samples += len(more[1])
                ts = more[1]
            newest = float(ts[-1])
            for frame in self.runtime.poll(max_behind_s=self.max_behind_s):
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
                self.stats.frames += 1
                self.stats.compute_ms.append(frame.latency_s * 1000)
                self.stats.motion_to_output_ms.append((now - newest) * 1000)
                self.stats.frame_delay_ms.append((now - frame.t) * 1000)
                if self.on_frame is not None:
                    self.on_frame(frame, now)
            self.stats.skipped = self.runtime.skipped
            if not self._calibration_said and self.runtime.calibration.done:
                self._calibration_said = True
                cal = self.runtime.calibration
                how = "still window" if cal.still else "no still window found: the stillest"
                print(f"imusic: neutral pose calibrated ({how}, frame {cal.at_frame}); "
                      "output frames are valid from here", file=sys.stderr, flush=True)

    def _feed(self, rows: np.ndarray, timestamps: np.ndarray, labels: list[str],
              stream: str = "") -> None:
        if self._layout is None:
            self._layout = model_layout(labels, self.runtime, stream, self.model_path)
        self._queue.put((np.asarray(rows, np.float64), np.asarray(timestamps, np.float64),
                         self._layout))

    # ------------------------------------------------------------------ sources
    async def _run_device(self, stop: asyncio.Event) -> None:
        from firmware_bridge.device import DeviceSession, SessionConfig

        rig: Any = self.link.rig
        if rig and rig != "auto":
            from hardware.rig import load_rig

            rig = load_rig(rig)
        from firmware_bridge.transports import link_factory

        link = self.link
        factory = link_factory(serial=link.serial, baud=link.baud, ble=link.ble, udp=link.udp,
                               udp_host=link.udp_host, allow=link.allow)
        session = DeviceSession(factory,
                                SessionConfig(rig=rig, name=self.imu_name))
        self.session = session

        def on_samples(rows: np.ndarray, ts: np.ndarray) -> None:
            labels = [c[0] for c in session.outlet.spec.channels]
            spec = session.outlet.spec
            # A ChannelMismatch is a DeviceError: the session ends at once and run() raises it.
            self._feed(rows, ts, labels, f"'{spec.name}' (device {spec.info.name})")

        session.on_samples = on_samples
        self.health = session.health
        await session.run(stop)

    def _run_lsl(self, stop: threading.Event) -> None:
        from model.runtime import imu_labels

        want = self.link.lsl or ""
        inlet = open_inlet(
            "type='IMU'" + (f" and (name='{want}' or source_id='{want}')" if want else ""),
            f"IMU LSL stream {want!r}", "start 'imusic stream' (or 'imusic emulate' + 'imusic "
            "stream') first, or check --lsl NAME",
            only_one_s=None if want else self.link.lsl_settle_s)
        try:
            full = inlet.info(timeout=5.0)
            labels = imu_labels(full)
            while not stop.is_set():
                rows, ts = inlet.pull_chunk(timeout=0.05, max_samples=1024)
                if ts:
                    self._feed(np.asarray(rows), np.asarray(ts), labels, f"'{full.name()}'")
        finally:
            inlet.close_stream()

    # ------------------------------------------------------------------ control
    async def run(self, stop: asyncio.Event) -> LiveStats:
        """Run until ``stop`` is set. Returns the measured statistics."""
        self._open_outputs()
        self._thread = threading.Thread(target=self._model_loop, name="imusic-model",
                                        daemon=True)
        self._thread.start()
        try:
            if self.link.lsl is not None:
                halt = threading.Event()
                task = asyncio.create_task(asyncio.to_thread(self._run_lsl, halt))
                with contextlib.suppress(asyncio.CancelledError):
                    done, _ = await asyncio.wait(
                        {task, asyncio.create_task(stop.wait())},
                        return_when=asyncio.FIRST_COMPLETED)
                halt.set()
                await task   # re-raises a resolve failure
            else:
                await self._run_device(stop)
        finally:
            self._stopping.set()
            self._queue.put(None)
            await asyncio.to_thread(self._thread.join, 10.0)
            if self._sender is not None:
                self._sender.close()
            self._outlet = None
        return self.stats


class ChannelMismatch(DeviceError, LookupError):
    """The model needs IMU channels the stream does not have (one clear line: ``str(err)``)."""


def stream_quantities(labels: list[str]) -> list[str]:
    """The quantities an IMU stream's ``site.quantity.axis`` labels carry, in stream order."""
    out: list[str] = []
    for label in labels:
        parts = label.split(".")
        if len(parts) == 3 and parts[0] != "device" and parts[1] not in out:
            out.append(parts[1])
    return out


def model_layout(labels: list[str], runtime: Any, stream: str = "", model: Any = None) -> Any:
    """The runtime's ``ChannelLayout`` on a stream's labels, or ChannelMismatch saying in one
    line which channels the checkpoint's features need that the stream lacks (an orientation
    device that sends no gyro to a raw-feature model, a raw device to a model trained on
    reported orientation, a 6-axis device, another rig), and what to do."""
    from model.runtime import MissingChannels

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


class FrameBuffer:
    """The newest blendshape frames with their timestamps (thread-safe): ARKit for the fuser,
    the twin's truth for the demo's live error."""

    def __init__(self, span_s: float = 2.0) -> None:
        self._frames: deque[tuple[float, np.ndarray]] = deque()
        self._heads: deque[np.ndarray] = deque()   # each frame's head yaw/pitch/roll (zeros if none)
        self._lock = threading.Lock()
        self._span = span_s
        self.lost_at: float | None = None

    def add(self, t: float, values: np.ndarray | None) -> None:
        """Add a frame captured at ``t``; ``values`` None is a face-lost packet."""
        with self._lock:
            if values is None:
                self.lost_at = t
                return
            row = np.asarray(values, np.float64)
            self._frames.append((t, row[:N_BLENDSHAPES]))
            head = row[N_BLENDSHAPES:N_BLENDSHAPES + 3]
            self._heads.append(head.copy() if len(head) == 3 else np.zeros(3))
            while self._frames and self._frames[-1][0] - self._frames[0][0] > self._span:
                self._frames.popleft()
                self._heads.popleft()

    def head_at(self, t: float) -> np.ndarray | None:
        """The head yaw/pitch/roll of the frame captured at exactly ``t`` (as ``at`` returned
        it), or None."""
        with self._lock:
            for (ft, _), head in zip(reversed(self._frames), reversed(self._heads)):
                if ft == t:
                    return head.copy()
                if ft < t:
                    break
        return None

    def at(self, t: float, tolerance_s: float) -> tuple[np.ndarray | None, float | None]:
        """The newest frame captured no later than ``t + tolerance_s``, and its time; (None,
        None) when there is none, or the face was reported lost after it. How old the frame
        may be is the fuser's decision (``FusionConfig.lost_timeout_s``)."""
        with self._lock:
            if not self._frames:
                return None, None
            times = np.fromiter((f[0] for f in self._frames), float, len(self._frames))
            k = int(np.searchsorted(times, t + tolerance_s, side="right")) - 1
            if k < 0:
                return None, None
            ft, values = self._frames[k]
            if self.lost_at is not None and ft < self.lost_at <= t + tolerance_s:
                return None, None
            return values, ft


class HybridPipeline:
    """ARKit + IMU -> fused blendshapes (see the module docstring)."""

    def __init__(self, link: LinkOptions, arkit_listen: int | None = None,
                 arkit_lsl: str | None = None, model: str | Path | None = None,
                 steps: int | None = None, name: str = "imusic-hybrid",
                 fusion: Any = None,
                 on_fused: Callable[[float, Any], None] | None = None) -> None:
        from model.fusion import FusionConfig, HybridFusion

        if (arkit_listen is None) == (arkit_lsl is None):
            raise ValueError("give exactly one ARKit source: --arkit-listen PORT or --arkit-lsl")
        self.arkit_listen, self.arkit_lsl = arkit_listen, arkit_lsl
        self.name = name
        self.fuser = HybridFusion(fusion or FusionConfig())
        self.arkit = FrameBuffer()
        self.on_fused = on_fused
        self.live = LivePipeline(link, model=model, steps=steps, name=f"{name}-imu",
                                 on_frame=self._on_imu_frame)
        self.receiver: Any = None
        self.fused_frames = 0
        self.head_source = ""
        """Where the last fused frame's head pose came from: "arkit" or "imu"."""
        self._fused_outlet: Any = None
        self._state_outlet: Any = None

    def _open_outlets(self) -> None:
        import pylsl

        from capture.arkit_bridge import blendshapes_info
        from model.fusion import REGION_NAMES

        self._fused_outlet = pylsl.StreamOutlet(blendshapes_info(
            self.name, "imusic-hybrid", f"{self.name}-fused", rate_hz=60.0,
            extra={"head_pose": HEAD_POSE_HYBRID}))
        info = pylsl.StreamInfo(f"{self.name}-state", FUSION_STATE_TYPE, 2 * len(REGION_NAMES),
                                60.0, pylsl.cf_float32, f"{self.name}-state")
        chans = info.desc().append_child("channels")
        for what, unit in (("arkit_weight", "share"), ("trusted", "bool")):
            for region in REGION_NAMES:
                ch = chans.append_child("channel")
                ch.append_child_value("label", f"{region}.{what}")
                ch.append_child_value("unit", unit)
        self._state_outlet = pylsl.StreamOutlet(info)

    def _on_imu_frame(self, frame: Any, now: float) -> None:
        from model.runtime import stream_values

        tolerance = 1.5 / 60.0
        arkit, arkit_t = self.arkit.at(frame.t, tolerance)
        fused = self.fuser.step(frame.t, frame.blendshapes, arkit, arkit_t)
        values = stream_values(fused.values, self.head_for(frame.t, arkit_t))
        if self._fused_outlet is not None:
            self._fused_outlet.push_sample(values, frame.t)
            self._state_outlet.push_sample(
                list(map(float, fused.arkit_weight)) + list(map(float, fused.trusted)), frame.t)
        self.fused_frames += 1
        if self.on_fused is not None:
            self.on_fused(frame.t, fused)

    def head_for(self, t: float, arkit_t: float | None) -> np.ndarray:
        """The fused frame's head pose: ARKit's where the ARKit frame used has a non-zero head
        pose (``self.head_source = "arkit"``), else the reference IMU's (``"imu"``)."""
        head = None if arkit_t is None else self.arkit.head_at(arkit_t)
        if head is not None and np.any(head != 0.0):
            self.head_source = "arkit"
            return head
        self.head_source = "imu"
        return self.live.head_track.at(t)

    async def _arkit_from_livelink(self, stop: asyncio.Event) -> None:
        from capture.arkit_bridge import LiveLinkReceiver

        def on_frame(packet: Any, ts: float) -> None:
            self.arkit.add(ts, None if packet.values is None else packet.values)

        # The receiver republishes ARKit on LSL too, so a recorder gets the ground truth.
        async with LiveLinkReceiver(name=f"{self.name}-arkit", port=self.arkit_listen,
                                    on_frame=on_frame) as rx:
            self.receiver = rx
            await stop.wait()

    def _arkit_from_lsl(self, halt: threading.Event) -> None:
        want = self.arkit_lsl or ""
        inlet = open_inlet(
            "type='Blendshapes'" + (f" and (name='{want}' or source_id='{want}')" if want
                                    else " and desc/source='arkit'"),
            f"ARKit Blendshapes LSL stream {want!r}",
            "start 'imusic arkit --listen 11111' (or --replay TAKE.csv) first")
        read_frames(inlet, self.arkit, halt)

    async def run(self, stop: asyncio.Event) -> LiveStats:
        """Run until ``stop`` is set."""
        self._open_outlets()
        if self.arkit_listen is not None:
            arkit_task = asyncio.create_task(self._arkit_from_livelink(stop))
            halt = None
        else:
            halt = threading.Event()
            arkit_task = asyncio.create_task(asyncio.to_thread(self._arkit_from_lsl, halt))
        try:
            return await self.live.run(stop)
        finally:
            stop.set()
            if halt is not None:
                halt.set()
            await arkit_task


def open_inlet(predicate: str, what: str, fix: str, timeout_s: float = 10.0,
               only_one_s: float | None = None) -> Any:
    """An LSL inlet (clock-synchronised, monotonic, recovering) on the first stream matching the
    XPath ``predicate``; ``LookupError`` naming ``what`` and the ``fix`` when none appears.
    With ``only_one_s``, look that much longer for others and refuse to choose (LookupError
    listing them) when there are several."""
    import pylsl

    found = pylsl.resolve_bypred(predicate, 1, timeout_s)
    if not found:
        raise LookupError(f"no {what} found in {timeout_s:.0f} s: {fix}")
    if only_one_s is not None:
        streams = {i.uid(): i for i in found + pylsl.resolve_bypred(predicate, 0, only_one_s)}
        if len(streams) > 1:
            names = ", ".join(sorted(f"{i.name()} (source_id {i.source_id()})"
                                     for i in streams.values()))
            raise LookupError(f"{len(streams)} streams match {what}: {names}; name one with "
                              f"--lsl NAME (a name or a source_id)")
    return pylsl.StreamInlet(found[0], max_buflen=5, recover=True,
                             processing_flags=pylsl.proc_clocksync | pylsl.proc_monotonize)


def read_frames(inlet: Any, buffer: "FrameBuffer", halt: threading.Event) -> None:
    """Pull a Blendshapes inlet into ``buffer`` until ``halt`` is set; closes the inlet."""
    try:
        while not halt.is_set():
            rows, ts = inlet.pull_chunk(timeout=0.05)
            for row, t in zip(rows, ts):
                buffer.add(t, np.asarray(row))
    finally:
        inlet.close_stream()


async def run_until_stopped(work: Any, stop: asyncio.Event, seconds: float | None,
                            status: Callable[[], str | None] | None = None,
                            every_s: float = 1.0) -> None:
    """Run the coroutine ``work`` until it ends, ``stop`` is set (Ctrl-C, SIGTERM, or the
    caller) or ``seconds`` pass, printing ``status()`` to stderr every ``every_s``. Errors of
    ``work`` are raised here."""
    import sys

    undo = install_stop_signals(stop)
    run = asyncio.create_task(work)
    timer = asyncio.create_task(stop_after(stop, seconds))
    try:
        while not run.done():
            await asyncio.wait({run}, timeout=every_s)
            line = status() if status is not None and not run.done() else None
            if line:
                print(line, file=sys.stderr, flush=True)
        await run
    finally:
        stop.set()
        timer.cancel()
        undo()
        if not run.done():
            with contextlib.suppress(BaseException):
                await run


def install_stop_signals(stop: asyncio.Event) -> Callable[[], None]:
    """Set ``stop`` on Ctrl-C and SIGTERM (main thread only). Returns an undo function."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    def undo() -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)

    return undo


async def stop_after(stop: asyncio.Event, seconds: float | None) -> None:
    """Set ``stop`` after ``seconds`` (never when None)."""
    if seconds is None:
        return
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    stop.set()


def mark_no_raw(path: str | Path) -> None:
    """Record in a session file that it holds no raw IMU signals (``--no-raw``)."""
    import h5py

    with h5py.File(path, "a") as h5:
        h5.attrs["raw_imu"] = False
        h5.attrs["privacy"] = ("recorded with --no-raw: predicted blendshapes and device health "
                               "only; no raw IMU signals and no camera data")
