"""The pipelines that compose the parts: live capture and hybrid tracking (``imusic live``,
``imusic hybrid``, ``imusic demo``).

How the pieces fit:

* ``imusic.sources``: where IMU samples come from (:class:`LinkOptions`: a wearable through a
  transport and a device session, or an ``IMU`` LSL stream) and the LSL reading every
  pipeline shares (``open_inlet``, ``pull_ready``, ``PacketReader`` for an ``IMU`` stream's
  whole device packets, ``FrameBuffer``, ``read_frames``);
* ``imusic.live_loop``: the one live loop, :class:`LiveLoop` (IMU rows -> the streaming model
  runtime -> an LSL ``Blendshapes`` stream of predictions, Live Link Face packets, the
  ``on_frame`` hook) and what it measures (``LiveStats``);
* this module: :class:`LivePipeline` runs a source into the live loop, :class:`HybridPipeline`
  adds ARKit (Live Link Face packets or an LSL ``Blendshapes`` stream) and the per-region fuser
  (``model.fusion``), publishing the fused stream and a per-region state stream;
* ``imusic.runner``: signals, ``--seconds``, the status line and the stop, for the commands.

Threads: an LSL source is read and computed on one thread (the sample that completes a tick
is turned into a frame where it was pulled, with no hand-off). A wearable's device session runs
on the event loop, which must keep reading the link on time (it stamps arrivals and publishes
the raw ``IMU`` stream): its samples are queued to a model thread, which takes in everything
waiting before computing, so a backlog is seen (and skipped, ``LiveLoop.max_behind_s``) at
once. Nothing in this path opens a camera.

Latency, newest sample to output (``benchmarks/bench_live.py``), stage by stage with
``--lsl``, as measured on the 2-core test machine under a load of 4-5 (15-20 s runs):
``imusic stream`` pushes a sample p50 1.5 ms / p99 15 ms after its (clock-mapped) device time;
an idle separate inlet has it 0.3 ms later at p50; this thread pulls it p50 2-5 ms after its
time (later when it was computing the previous frame); the model computes a frame in p50 4 ms
(p99 8-13 ms). The tail was the pulls that complete two ticks (20 ms device packets over
16.7 ms ticks: a third of the frames): both frames went out after both computes. Each frame is
now published as soon as it is made (``Runtime.frames``): the first of such a pair in a median
6.4 ms instead of 14.4 ms. What is left in the tail is the second of the pair (two computes),
the model's own tail, and the extra process of ``--lsl``.

Before streaming, the objects loaded so far (torch, the model, the modules: ~300 000) are
frozen out of the garbage collector (``gc.freeze``). A full collection walks all of them and
holds every thread meanwhile: 180-500 ms on the loaded 2-core test machine, 10-30 frames late
at once. They are rare within a run (none in the 30 s benchmark runs: they came at start-up),
so this guards long runs; collections still run over what the run itself allocates.

Head pose: each output frame carries the pose of the instant it describes in
``headYaw/headPitch/headRoll`` (``imusic.live_loop``); the hybrid prefers ARKit's own head pose
on frames where it is non-zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import queue
import threading
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pylsl
import torch

from imusic.capture.arkit_bridge import LiveLinkReceiver
from imusic.firmware_bridge.streams import (BLENDSHAPES_TYPE, blendshapes_info, fusion_state_info,
                                            parse_imu, predicate)
from imusic.live_loop import HEAD_POSE_IMU, LiveLoop, LiveStats
from imusic.sources import (
    FrameBuffer,
    LinkOptions,
    MarkerWatch,
    device_session,
    is_calibration_marker,
    open_imu_inlet,
    open_inlet,
    PacketReader,
    read_frames,
)
from imusic.model.fusion import REGION_NAMES, FusionConfig, HybridFusion
from imusic.model.runtime import Runtime, stream_values

_Queued = tuple[np.ndarray, np.ndarray, list[str], str, float]
"""A device session's samples for the model thread: rows, timestamps, channel labels, the
stream's name for messages, and when they were queued (LSL clock)."""

HEAD_POSE_HYBRID = ("arkit on frames where ARKit's head yaw/pitch/roll are non-zero, else the "
                    + HEAD_POSE_IMU)
"""``desc/head_pose`` of the hybrid's fused stream."""


class LivePipeline:
    """IMU in, predicted blendshapes out (see the module docstring).

    ``on_frame(frame, publish_time)`` is called for every output frame, on the thread that
    computes it (the hybrid and the demo hook in there)."""

    def __init__(self, link: LinkOptions, model: str | Path | None = None,
                 steps: int | None = None, name: str = "imusic-model",
                 livelink: tuple[str, int] | None = None,
                 on_frame: Callable[[Any, float], None] | None = None,
                 publish: bool = True, imu_name: str | None = None,
                 max_behind_s: float = 0.25, recalibrate_on_marker: bool = False) -> None:
        # One intra-op thread: the per-frame tensors are tiny, and on a busy 2-core machine a
        # second torch thread spinning against capture made a frame 40x slower (measured).
        torch.set_num_threads(1)
        self.link = link
        self.name = name
        self.imu_name = imu_name
        self.loop = LiveLoop(Runtime.from_checkpoint(model, steps=steps), name=name,
                             livelink=livelink, on_frame=on_frame, publish=publish,
                             model_path=model, max_behind_s=max_behind_s)
        self.markers = (MarkerWatch(self._on_marker) if recalibrate_on_marker else None)
        """With ``recalibrate_on_marker``: every Markers stream, for a calibration marker."""
        self.health: Any = None
        """The device session's health (None with an LSL source)."""
        self.session: Any = None
        self._queue: queue.Queue[_Queued | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def runtime(self) -> Runtime:
        """The model runtime."""
        return self.loop.runtime

    @property
    def stats(self) -> LiveStats:
        """What the live loop measured so far."""
        return self.loop.stats

    @property
    def head_track(self) -> Any:
        """Head poses by tick time (``LiveLoop.head_track``)."""
        return self.loop.head_track

    # ------------------------------------------------------------------ a wearable
    def _model_thread(self) -> None:
        """Compute the device session's queued samples (see the module docstring)."""
        while True:
            item = self._queue.get()
            if item is None or self._stopping.is_set():
                return   # on stop, a backlog is dropped rather than computed late
            self.loop.push(*item)
            while True:   # take in everything already waiting, so a backlog is seen at once
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)
                    break
                self.loop.push(*more)
            self.loop.publish_ready()

    async def _run_device(self, stop: asyncio.Event) -> None:
        session = device_session(self.link, self.imu_name)
        self.session = session

        def on_samples(rows: np.ndarray, ts: np.ndarray) -> None:
            spec = session.outlet.spec
            labels = [c[0] for c in spec.channels]
            stream = f"'{spec.name}' (device {spec.info.name})"
            # A ChannelMismatch is a DeviceError: raised here, the session ends at once and
            # run() raises it.
            self.loop.check_layout(labels, stream)
            self._queue.put((np.asarray(rows, np.float64), np.asarray(ts, np.float64),
                             labels, stream, pylsl.local_clock()))

        session.on_samples = on_samples
        self.health = session.health
        self._thread = threading.Thread(target=self._model_thread, name="imusic-model",
                                        daemon=True)
        self._thread.start()
        try:
            await session.run(stop)
        finally:
            self._stopping.set()
            self._queue.put(None)
            await asyncio.to_thread(self._thread.join, 10.0)

    # ------------------------------------------------------------------ an LSL stream
    def _run_lsl(self, halt: threading.Event) -> None:
        """Pull the IMU stream and compute on this thread until ``halt`` is set."""
        inlet = open_imu_inlet(self.link)
        try:
            full = inlet.info(timeout=5.0)
            layout = parse_imu(full)
            labels = list(layout.labels)
            stream = f"'{full.name()}'"
            reader = PacketReader(inlet, layout)
            while not halt.is_set():
                rows, ts = reader.pull()
                if ts:
                    self.loop.push(rows, ts, labels, stream)
                    self.loop.publish_ready()
        finally:
            inlet.close_stream()

    # ------------------------------------------------------------------ control
    def _on_marker(self, text: str, stream: str) -> None:
        if is_calibration_marker(text):
            self.loop.request_recalibration(f"marker {text[:40]!r} on {stream!r}")

    async def run(self, stop: asyncio.Event) -> LiveStats:
        """Run until ``stop`` is set. Returns the measured statistics."""
        self.loop.open()
        if self.markers is not None:
            self.markers.start()
        gc.collect()
        gc.freeze()   # see the module docstring
        try:
            if self.link.lsl is not None:
                halt = threading.Event()
                task = asyncio.create_task(asyncio.to_thread(self._run_lsl, halt))
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait({task, asyncio.create_task(stop.wait())},
                                       return_when=asyncio.FIRST_COMPLETED)
                halt.set()
                await task   # re-raises a resolve failure
            else:
                await self._run_device(stop)
        finally:
            gc.unfreeze()
            if self.markers is not None:
                self.markers.stop()
            self.loop.close()
        return self.stats


class HybridPipeline:
    """ARKit + IMU -> fused blendshapes (see the module docstring)."""

    def __init__(self, link: LinkOptions, arkit_listen: int | None = None,
                 arkit_lsl: str | None = None, model: str | Path | None = None,
                 steps: int | None = None, name: str = "imusic-hybrid",
                 fusion: FusionConfig | None = None,
                 on_fused: Callable[[float, Any], None] | None = None,
                 max_behind_s: float = 0.25, recalibrate_on_marker: bool = False) -> None:
        if (arkit_listen is None) == (arkit_lsl is None):
            raise ValueError("give exactly one ARKit source: --arkit-listen PORT or --arkit-lsl")
        self.arkit_listen, self.arkit_lsl = arkit_listen, arkit_lsl
        self.name = name
        self.fuser = HybridFusion(fusion or FusionConfig())
        self.arkit = FrameBuffer()
        self.on_fused = on_fused
        self.live = LivePipeline(link, model=model, steps=steps, name=f"{name}-imu",
                                 on_frame=self._on_imu_frame, max_behind_s=max_behind_s,
                                 recalibrate_on_marker=recalibrate_on_marker)
        self.receiver: Any = None
        self.fused_frames = 0
        self.head_source = ""
        """Where the last fused frame's head pose came from: "arkit" or "imu"."""
        self._fused_outlet: Any = None
        self._state_outlet: Any = None

    def _open_outlets(self) -> None:
        self._fused_outlet = pylsl.StreamOutlet(blendshapes_info(
            self.name, "imusic-hybrid", f"{self.name}-fused", rate_hz=60.0,
            extra={"head_pose": HEAD_POSE_HYBRID}))
        self._state_outlet = pylsl.StreamOutlet(fusion_state_info(
            f"{self.name}-state", f"{self.name}-state", REGION_NAMES, rate_hz=60.0))

    def _on_imu_frame(self, frame: Any, now: float) -> None:
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
            predicate(BLENDSHAPES_TYPE, want, "" if want else "desc/source='arkit'"),
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
