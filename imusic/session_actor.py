"""A participant without hardware: the twin acting a take of a protocol, and a phone.

``EmulatedParticipant.begin(plan)`` (the ``Actor`` that capture/protocol_session.py's runner
takes) turns the take's plan into facial motion (hardware/acted.py), starts the emulator on
that motion (a virtual wearable on a pseudo-terminal, firmware_bridge/emulator.py, which sends
the motion's tap as the device's EVENT tap), a device session publishing the IMU stream and
its events stream (firmware_bridge/device.py, as ``imusic stream`` does) and, once the device
streams, replays the same motion as the phone's ARKit stream (capture/arkit_bridge.replay_take,
the ``imusic arkit --replay`` machinery). It returns the LSL time of the plan's time 0, so the
runner shows each prompt when the twin acts it; ``end()`` stops all three.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class ActorConfig:
    """The emulated rig and its timing."""

    rate_hz: int = 100
    """IMU sample rate of the virtual wearable."""
    lead_in_s: float = 4.0
    """Still neutral face before the plan starts (the recorder starts meanwhile)."""
    tail_s: float = 3.0
    """Motion after the plan ends (the runner's tail and the recorder's stop)."""
    start_deadline_s: float = 30.0
    """Seconds for the emulator to start streaming after the device session connects."""
    rig: str = "imusic11"


class EmulatedParticipant:
    """See the module doc; one per session, ``begin``/``end`` once per take."""

    def __init__(self, seed: int = 0, config: ActorConfig | None = None,
                 tag: str | None = None) -> None:
        import pylsl

        from imusic.firmware_bridge.streams import blendshapes_info

        self.config = config or ActorConfig()
        self.seed = seed
        self.tag = tag = tag or uuid.uuid4().hex[:6]
        self.imu_name = f"imusic-session-imu-{tag}"
        self.phone_name = f"imusic-session-phone-{tag}"
        self.names = [self.imu_name, f"{self.imu_name}-events", self.phone_name]
        self.phone = pylsl.StreamOutlet(blendshapes_info(
            self.phone_name, "arkit", f"replay:{self.phone_name}",
            extra={"replay": "acted protocol (imusic session --emulate)"}))
        self.takes = 0
        self.emulator: Any = None
        self.session: Any = None
        self.thread: threading.Thread | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop: asyncio.Event | None = None
        self.origin: float | None = None
        self.error: BaseException | None = None
        self._ready = threading.Event()

    def begin(self, plan: list[tuple[float, float, str, dict]]) -> float:
        """Start acting ``plan``; returns the LSL time of the plan's time 0."""
        from imusic.capture.livelink_csv import LiveLinkTake
        from imusic.firmware_bridge.emulator import Emulator, EmulatorConfig
        from imusic.hardware.acted import ActingConfig, act
        from imusic.hardware.vocabulary import N_BLENDSHAPES, STREAM_NAMES

        cfg = self.config
        lead = cfg.lead_in_s
        motion = act([(a + lead, b + lead, k, tg) for a, b, k, tg in plan],
                     seed=self.seed + self.takes, config=ActingConfig(tail_s=cfg.tail_s))
        self.takes += 1
        values = np.zeros((motion.n_frames, len(STREAM_NAMES)), np.float32)
        values[:, :N_BLENDSHAPES] = motion.blendshapes
        take = LiveLinkTake(t=motion.t.copy(), values=values,
                            face_found=np.ones(motion.n_frames, bool), fps=motion.fps,
                            path=Path(f"acted-take-{self.takes}"))
        self.emulator = Emulator.run_in_thread(EmulatorConfig(
            transport="serial", rig=cfg.rig, motion=motion, rate_hz=cfg.rate_hz,
            seconds=motion.duration, seed=self.seed, keep_truth=False)).__enter__()
        self._ready.clear()
        self.origin, self.error = None, None
        self.thread = threading.Thread(target=self._main, args=(take,), daemon=True,
                                       name="imusic-session-actor")
        self.thread.start()
        if not self._ready.wait(cfg.start_deadline_s) or self.origin is None:
            self.end()
            raise RuntimeError(f"the emulated wearable did not start streaming within "
                               f"{cfg.start_deadline_s:g} s" + (f": {self.error}" if self.error
                                                                else ""))
        return self.origin + lead

    def _main(self, take: Any) -> None:
        try:
            asyncio.run(self._amain(take))
        except BaseException as err:  # noqa: BLE001 - handed to begin()
            self.error = err
            self._ready.set()

    async def _amain(self, take: Any) -> None:
        import pylsl

        from imusic.capture.arkit_bridge import replay_take
        from imusic.firmware_bridge.device import DeviceSession, SessionConfig
        from imusic.firmware_bridge.transports import link_factory

        self.loop = asyncio.get_running_loop()
        self.stop = asyncio.Event()
        self.session = DeviceSession(link_factory(serial=self.emulator.emulator.serial_path),
                                     SessionConfig(rig="auto", name=self.imu_name))
        dev = asyncio.create_task(self.session.run(self.stop))
        emu = self.emulator.emulator
        while not emu.stats.instants and not self.stop.is_set() and not dev.done():
            await asyncio.sleep(0.005)
        # the twin's motion time 0 went out with the first instant; the phone starts now
        self.origin = pylsl.local_clock()
        self._ready.set()
        phone = asyncio.create_task(replay_take(take, outlet=self.phone, stop=self.stop))
        await self.stop.wait()
        for task in (phone, dev):
            try:
                await asyncio.wait_for(task, 10.0)
            except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - shutting down
                task.cancel()

    def health(self) -> dict[str, Any] | None:
        """The device session's health (loss, rate, battery), for the experimenter screen."""
        return self.session.health.as_dict() if self.session is not None else None

    def end(self) -> None:
        """Stop the phone, the device session and the emulator."""
        if self.loop is not None and self.stop is not None:
            self.loop.call_soon_threadsafe(self.stop.set)
        if self.thread is not None:
            self.thread.join(20)
        if self.emulator is not None:
            self.emulator.stop()
        self.emulator = self.session = self.thread = self.loop = self.stop = None

    def close(self) -> None:
        """End any take and take the phone stream off LSL."""
        self.end()
        self.phone = None
