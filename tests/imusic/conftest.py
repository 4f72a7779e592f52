"""Fixtures for the end-to-end pipeline tests: a running emulator on a real pty, and a real UDP
socket that receives the Live Link Face packets a pipeline sends."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from imusic.firmware_bridge.emulator import Emulator, EmulatorConfig


@pytest.fixture
def emulator(unique_name):
    """A virtual imusic11 wearable on a new pseudo-terminal, procedural motion, publishing its
    ground truth as the LSL stream ``<unique_name>-truth``.

    Virtual wearers differ (mounting errors, biases, motion): with the bundled model, seed 4
    scores about 5.5 MAE x100, seed 11 about 5.4, seed 3 about 10 (offline and live alike).
    """
    config = EmulatorConfig(transport="serial", rig="imusic11", rate_hz=100, seconds=60.0,
                            seed=4, publish_truth=True, truth_name=f"{unique_name}-truth")
    with Emulator.run_in_thread(config) as emu:
        yield emu


class LiveLinkCatcher:
    """A real UDP socket on 127.0.0.1 and a thread keeping every datagram it receives: give
    ``target`` to ``--livelink``; ``packets`` are the raw datagrams, in arrival order."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.packets: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, name="livelink-catcher",
                                        daemon=True)
        self._thread.start()

    @property
    def target(self) -> str:
        """``127.0.0.1:PORT``, the ``--livelink`` argument that sends here."""
        return f"127.0.0.1:{self.sock.getsockname()[1]}"

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                self.packets.append(self.sock.recv(2048))
            except socket.timeout:
                pass

    def close(self) -> None:
        """Stop receiving (``packets`` keeps what came) and close the socket."""
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def livelink_catcher() -> Iterator[LiveLinkCatcher]:
    """A :class:`LiveLinkCatcher`, closed after the test."""
    catcher = LiveLinkCatcher()
    try:
        yield catcher
    finally:
        catcher.close()
