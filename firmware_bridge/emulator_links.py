"""The device side of each link the emulator speaks on: a pseudo-terminal, a UDP socket, an
emulated BLE peripheral. Each moves protocol bytes only (frames are built by the emulator).

Every link has ``start()``, ``send(data) -> bool`` (False: the bytes could not go out, the
emulator counts them as ``tx_dropped``), ``commands`` (an asyncio.Queue of bytes the host
wrote), ``disconnect(seconds) -> int`` (the per-transport meaning of a link drop, see BLE.md
and the README's emulator section; it returns how many of the bytes ``send`` took the host
never got: they were still in the pty when it was closed), ``describe()`` (what to print / hand to a host) and ``close()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import tempfile
import time
import tty
from pathlib import Path
from typing import Any

PTY_PENDING_LIMIT = 1 << 16
"""Bytes a pty link holds while the host is not reading; beyond it frames are dropped, as a
device drops frames its USB host does not fetch."""
PTY_DRAIN_QUIET_S = 0.005
"""At a pull, the pty's unread bytes are read out until none came for this long (the kernel
moves its buffers into the input queue asynchronously)."""
UDP_MAX_DATAGRAM = 1400
"""Largest datagram the UDP link sends (under a typical Wi-Fi/Ethernet MTU): frames are
packed whole into datagrams up to this size."""


class PtyLink:
    """The wearable as a USB CDC serial port: a new pseudo-terminal in raw mode.

    ``path`` is a stable symlink to the current pty's slave device; a host opens it with
    pyserial like a real port. ``disconnect`` closes the pty (the host's reads fail with EIO,
    as when a cable is pulled) and removes ``path``, as a pulled USB port's device node goes
    (a symlink left pointing at the closed ``/dev/pts/N`` would lead a host to whichever pty
    gets that number next); ``seconds`` later it makes a new pty and puts ``path`` back.
    """

    def __init__(self) -> None:
        self.commands: asyncio.Queue[bytes] = asyncio.Queue()
        self._dir = Path(tempfile.mkdtemp(prefix="imusic-emu-"))
        self.path = str(self._dir / "tty")
        """Stable path of the serial port (a symlink to the current pty slave)."""
        self.pty_path = ""
        """The current pty slave device (``/dev/pts/N``)."""
        self._master = -1
        self._slave = -1
        self._pending = b""
        self._writing = False
        self._up = False
        self._reconnect: asyncio.Task | None = None

    async def start(self) -> None:
        """Open the pty and point ``path`` at it."""
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line editing, no CR/LF translation: bytes are bytes
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self.pty_path = os.ttyname(slave)
        tmp = self._dir / "tty.new"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(self.pty_path)
        tmp.replace(self.path)  # atomic: a host never sees a half-made link
        asyncio.get_running_loop().add_reader(master, self._on_readable)
        self._pending = b""
        self._up = True

    def _on_readable(self) -> None:
        try:
            data = os.read(self._master, 4096)
        except OSError as err:
            if err.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                return
            data = b""
        if data:
            self.commands.put_nowait(data)

    async def send(self, data: bytes) -> bool:
        """Write to the pty without blocking; False (dropped) while down or when the host has
        not read ``PTY_PENDING_LIMIT`` bytes."""
        if not self._up:
            return False
        if len(self._pending) + len(data) > PTY_PENDING_LIMIT:
            return False
        self._pending += data
        return self._flush()

    def _flush(self) -> bool:
        """Write what the pty takes now; the rest goes when it becomes writable."""
        loop = asyncio.get_running_loop()
        try:
            n = os.write(self._master, self._pending) if self._pending else 0
        except BlockingIOError:
            n = 0
        except OSError:
            return False
        self._pending = self._pending[n:]
        if self._pending and not self._writing:
            self._writing = True
            loop.add_writer(self._master, self._on_writable)
        elif not self._pending and self._writing:
            self._writing = False
            loop.remove_writer(self._master)
        return True

    def _on_writable(self) -> None:
        if self._up:
            self._flush()

    def _close_pty(self) -> None:
        self._up = False
        if self._master >= 0:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._master)
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_writer(self._master)
            self._writing = False
            with contextlib.suppress(OSError):
                os.close(self._master)
        if self._slave >= 0:
            with contextlib.suppress(OSError):
                os.close(self._slave)
        self._master = self._slave = -1

    def _unread(self) -> int:
        """Bytes taken by ``send`` that the host has not read: still waiting here, or in the
        pty (its 4 KiB input queue and the kernel's buffers behind it, which no ioctl
        counts), all of which a hang-up discards. The pty's are read out through the
        device's own slave fd, so each byte is counted by whichever side got it."""
        unread = len(self._pending)
        if self._slave < 0:
            return unread
        os.set_blocking(self._slave, False)
        quiet_until = time.monotonic() + PTY_DRAIN_QUIET_S
        while time.monotonic() < quiet_until:
            try:
                chunk = os.read(self._slave, 1 << 16)
            except BlockingIOError:
                chunk = b""
            except OSError:
                break
            if chunk:
                unread += len(chunk)
                quiet_until = time.monotonic() + PTY_DRAIN_QUIET_S
            else:
                time.sleep(PTY_DRAIN_QUIET_S / 10)
        return unread

    async def disconnect(self, seconds: float) -> int:
        """Pull the cable: close the pty and remove ``path`` now, plug a new one in
        ``seconds`` later. Returns the bytes lost with the pty (sent, never read)."""
        unread = self._unread()
        self._close_pty()
        with contextlib.suppress(OSError):
            os.unlink(self.path)

        async def replug() -> None:
            await asyncio.sleep(seconds)
            await self.start()

        self._reconnect = asyncio.get_running_loop().create_task(replug())
        return unread

    def describe(self) -> dict[str, Any]:
        """What a host needs: the port path."""
        return {"transport": "serial", "path": self.path, "pty": self.pty_path}

    async def close(self) -> None:
        """Close the pty and remove the symlink; never raises."""
        if self._reconnect is not None:
            self._reconnect.cancel()
            with contextlib.suppress(BaseException):
                await self._reconnect
        self._close_pty()
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        with contextlib.suppress(OSError):
            self._dir.rmdir()


class UdpLink:
    """The wearable on Wi-Fi: datagrams from an ephemeral local port to ``target``.

    Commands come back to the same socket (the host answers to the datagrams' source
    address). ``disconnect`` is a Wi-Fi dropout: nothing is sent for ``seconds``.
    """

    def __init__(self, target: tuple[str, int], local: tuple[str, int] = ("127.0.0.1", 0)
                 ) -> None:
        self.target = target
        self.local = local
        self.commands: asyncio.Queue[bytes] = asyncio.Queue()
        self.local_address: tuple[str, int] | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._down_until = 0.0

    async def start(self) -> None:
        """Bind the socket."""
        link = self

        class _Protocol(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                link.commands.put_nowait(data)

            def error_received(self, exc: Exception) -> None:
                pass  # ICMP port unreachable while no host listens: a device shrugs it off

        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(_Protocol, local_addr=self.local)
        self._transport = transport
        self.local_address = transport.get_extra_info("sockname")[:2]

    async def send(self, data: bytes) -> bool:
        """Send ``data`` (whole frames) in datagrams of at most UDP_MAX_DATAGRAM bytes."""
        if self._transport is None or asyncio.get_running_loop().time() < self._down_until:
            return False
        try:
            if len(data) <= UDP_MAX_DATAGRAM:
                self._transport.sendto(data, self.target)
            else:
                for chunk in _pack_frames(data, UDP_MAX_DATAGRAM):
                    self._transport.sendto(chunk, self.target)
        except OSError:
            return False
        return True

    async def disconnect(self, seconds: float) -> int:
        """A Wi-Fi dropout: send nothing for ``seconds`` (nothing already sent is lost)."""
        self._down_until = asyncio.get_running_loop().time() + seconds
        return 0

    def describe(self) -> dict[str, Any]:
        """Where the datagrams come from and go to."""
        return {"transport": "udp", "target": f"{self.target[0]}:{self.target[1]}",
                "local": f"{self.local_address[0]}:{self.local_address[1]}"
                if self.local_address else None}

    async def close(self) -> None:
        """Close the socket; never raises."""
        if self._transport is not None:
            self._transport.close()
            self._transport = None


def _pack_frames(data: bytes, limit: int) -> list[bytes]:
    """Split a run of whole frames (each ending in 0x00) into datagrams of at most ``limit``
    bytes without cutting a frame (a frame longer than ``limit`` goes alone)."""
    out: list[bytes] = []
    current = b""
    for frame in data.split(b"\x00"):
        if not frame:
            continue
        frame = b"\x00" + frame + b"\x00"
        if current and len(current) + len(frame) > limit:
            out.append(current)
            current = b""
        current += frame
    if current:
        out.append(current)
    return out


class BleLink:
    """The wearable as an emulated BLE peripheral (``emulator_ble.BlePeripheral``).
    ``disconnect`` drops the connection; the host must reconnect (advertising restarts at
    once, so ``seconds`` is not used)."""

    def __init__(self, name: str, **peripheral_kwargs: Any) -> None:
        from imusic.firmware_bridge.emulator_ble import BlePeripheral

        self.peripheral = BlePeripheral(name, **peripheral_kwargs)
        self.commands = self.peripheral.commands

    async def start(self) -> None:
        """Power on and advertise."""
        await self.peripheral.start()

    async def send(self, data: bytes) -> bool:
        """Notify ``data``; False while no host is subscribed."""
        return await self.peripheral.send(data)

    async def disconnect(self, seconds: float) -> int:
        """Drop the connection (notifications already sent were delivered)."""
        await self.peripheral.drop_connections()
        return 0

    def describe(self) -> dict[str, Any]:
        """The address, name and HCI spec a host uses (IMUSIC_BLE_HCI)."""
        return {"transport": "ble", "address": self.peripheral.address,
                "name": self.peripheral.device_name, "hci": self.peripheral.hci_spec}

    async def close(self) -> None:
        """Disconnect and power off; never raises."""
        await self.peripheral.close()
