"""BLE transport: the wearable's GATT service through bleak (firmware_bridge/BLE.md).

The device streams the protocol byte stream (frames ending in 0x00) as notifications on the
FRAMES characteristic, cut at arbitrary points into pieces of at most ATT_MTU-3 bytes; the host
writes command frames to the COMMANDS characteristic. This transport only moves bytes: the
core ``Decoder`` reassembles frames by their 0x00 delimiter, however the pieces fall.

Which Bluetooth stack is underneath:

* ``hci=None`` and no ``IMUSIC_BLE_HCI`` in the environment: bleak's OS backend (BlueZ over
  D-Bus on Linux, CoreBluetooth, WinRT): a real radio.
* ``hci="tcp-client:127.0.0.1:PORT"`` (or ``IMUSIC_BLE_HCI``): bleak's front end on the bumble
  host stack (``ble_bumble``), e.g. against the emulator's virtual controller, or ``usb:0`` for
  an HCI dongle without BlueZ.

Use::

    devices = await scan(3.0)                            # wearables advertising the service
    async with BleTransport(devices[0].address) as link:
        await link.write(encode(CmdGetInfo(), 0))
        chunk = await link.read()
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass
from typing import Any

from imusic.firmware_bridge.transports.base import Transport, TransportClosed, TransportError

SERVICE_UUID = "5e3a0001-6c1d-4b8e-9f27-1a6d2c9b7e40"
"""The imusic wearable's primary GATT service (advertised in the advertising data)."""
FRAMES_UUID = "5e3a0002-6c1d-4b8e-9f27-1a6d2c9b7e40"
"""Device -> host protocol byte stream: NOTIFY."""
COMMANDS_UUID = "5e3a0003-6c1d-4b8e-9f27-1a6d2c9b7e40"
"""Host -> device command frames: WRITE and WRITE WITHOUT RESPONSE."""
NAME_PREFIX = "imusic"
"""Advertised local names start with this (``imusic-wearable-3fa2``)."""
HCI_ENV = "IMUSIC_BLE_HCI"
"""Environment variable naming a bumble HCI transport spec to use instead of the OS stack."""
DEFAULT_MTU = 247
"""ATT MTU requested where the stack lets the application ask (bumble); the OS stacks
negotiate on their own and the transport reads the result."""
QUEUE_LIMIT = 8192
"""Notifications buffered for read(); beyond this the oldest are dropped and counted (a
reader that stalls must not grow memory without bound)."""


@dataclass(frozen=True)
class BleDevice:
    """A wearable seen by ``scan``."""

    address: str
    name: str | None
    rssi: int
    service_uuids: tuple[str, ...]
    details: Any = None
    """The bleak ``BLEDevice`` (connect with it to skip a second scan on some OSes)."""


def _backend_kwargs(hci: str | None) -> dict[str, Any]:
    spec = hci if hci is not None else os.environ.get(HCI_ENV) or None
    if spec is None:
        return {}
    from imusic.firmware_bridge.transports import ble_bumble

    return {"backend": ble_bumble.BumbleBleakClient, "hci": spec}


async def scan(timeout: float = 3.0, *, name: str | None = None, any_device: bool = False,
               hci: str | None = None) -> list[BleDevice]:
    """BLE devices advertising the imusic service (or, with ``name``, whose local name starts
    with it; ``any_device`` lists everything heard), strongest first."""
    from bleak import BleakScanner
    from bleak.exc import BleakError

    kwargs = _backend_kwargs(hci)
    if kwargs:
        from imusic.firmware_bridge.transports import ble_bumble

        kwargs["backend"] = ble_bumble.BumbleBleakScanner
    service_filter = None if (name or any_device) else [SERVICE_UUID]
    try:
        found = await BleakScanner.discover(timeout, return_adv=True,
                                            service_uuids=service_filter, **kwargs)
    except (BleakError, OSError) as err:
        where = kwargs.get("hci") or "the OS Bluetooth stack"
        raise TransportError(
            f"BLE scan failed on {where}: {err}. Is Bluetooth on (Linux: BlueZ and D-Bus "
            f"running), or the emulator running with {HCI_ENV} set to what it printed?") from err
    out = []
    for device, adv in found.values():
        local = adv.local_name or device.name
        if name and not (local or "").startswith(name):
            continue
        out.append(BleDevice(device.address, local, adv.rssi,
                             tuple(adv.service_uuids), device))
    return sorted(out, key=lambda d: -d.rssi)


class BleTransport(Transport):
    """One BLE connection to one wearable (``address``: as ``scan`` reports it, or a bleak
    ``BLEDevice``). ``read()`` raises ``TransportClosed`` once the link drops."""

    datagram = False

    def __init__(self, address: Any, *, hci: str | None = None, mtu: int = DEFAULT_MTU,
                 connect_timeout: float = 10.0) -> None:
        self.address = getattr(address, "address", address)
        self._target = getattr(address, "details", None) or address
        self.name = f"ble:{self.address}"
        self._kwargs = _backend_kwargs(hci)
        self._mtu_wanted = mtu
        self._timeout = connect_timeout
        self._client: Any = None
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._closed = False
        self._link_lost = False
        self.mtu = 23
        """The negotiated ATT MTU (notification payloads are at most mtu - 3 bytes)."""
        self.notifications = 0
        """Notifications received."""
        self.dropped_notifications = 0
        """Notifications dropped because the reader fell QUEUE_LIMIT behind."""

    async def open(self) -> None:
        """Connect, read the MTU, check the service and subscribe to FRAMES."""
        from bleak import BleakClient
        from bleak.exc import BleakError

        kwargs = dict(self._kwargs)
        if "backend" in kwargs:
            kwargs["mtu"] = self._mtu_wanted
        client = BleakClient(self._target, disconnected_callback=self._on_disconnect,
                             timeout=self._timeout, **kwargs)
        try:
            await client.connect()
        except (BleakError, OSError, asyncio.TimeoutError) as err:
            raise TransportError(f"{self.name}: cannot connect: {err}. Is the wearable on, in "
                                 "range and not connected to another host? ('imusic devices' "
                                 "lists what advertises)") from err
        self._client = client
        try:
            if client.services.get_characteristic(FRAMES_UUID) is None:
                raise TransportError(
                    f"{self.name}: no imusic FRAMES characteristic {FRAMES_UUID}: not an imusic "
                    "wearable, or its firmware predates BLE.md")
            self.mtu = await self._read_mtu(client)
            await client.start_notify(FRAMES_UUID, self._on_notify)
        except BaseException:
            await self.close()
            raise

    @staticmethod
    async def _read_mtu(client: Any) -> int:
        backend = getattr(client, "_backend", None)
        acquire = getattr(backend, "_acquire_mtu", None)  # BlueZ reports 23 until asked
        if acquire is not None:
            with contextlib.suppress(Exception):
                await acquire()
        return int(client.mtu_size)

    def _on_notify(self, _sender: Any, data: bytearray) -> None:
        self.notifications += 1
        if self._queue.qsize() >= QUEUE_LIMIT:
            with contextlib.suppress(asyncio.QueueEmpty):
                self._queue.get_nowait()
                self.dropped_notifications += 1
        self._queue.put_nowait(bytes(data))

    def _on_disconnect(self, _client: Any) -> None:
        self._link_lost = True
        self._queue.put_nowait(None)

    @property
    def is_open(self) -> bool:
        """Connected and not closed."""
        return (self._client is not None and not self._closed and not self._link_lost
                and bool(self._client.is_connected))

    async def read(self) -> bytes:
        """The notification bytes received since the last call (at least one notification)."""
        if self._closed:
            raise TransportClosed(f"{self.name}: closed")
        first = await self._queue.get()
        parts = [first]
        while not self._queue.empty():  # join what is already here: fewer, larger chunks
            parts.append(self._queue.get_nowait())
        if None in parts:
            good = b"".join(p for p in parts[:parts.index(None)] if p)
            if good:  # hand over the bytes before the drop; report the drop next time
                self._queue.put_nowait(None)
                return good
            self._queue.put_nowait(None)  # every later read() reports it too
            raise TransportClosed(f"{self.name}: BLE link lost (disconnected)")
        return b"".join(parts)

    async def write(self, data: bytes) -> None:
        """Write command bytes to COMMANDS (with response), in pieces of at most mtu - 3."""
        from bleak.exc import BleakError

        if not self.is_open:
            raise TransportClosed(f"{self.name}: not connected")
        step = max(1, self.mtu - 3)
        try:
            for i in range(0, len(data), step):
                await self._client.write_gatt_char(COMMANDS_UUID, data[i:i + step], response=True)
        except (BleakError, OSError) as err:
            raise TransportClosed(f"{self.name}: write failed: {err}") from err

    async def close(self) -> None:
        """Unsubscribe and disconnect; idempotent, never raises."""
        if self._closed:
            return
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                if client.is_connected:
                    await client.stop_notify(FRAMES_UUID)
            with contextlib.suppress(Exception):
                await client.disconnect()
        self._queue.put_nowait(None)
