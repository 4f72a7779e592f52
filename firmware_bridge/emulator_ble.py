"""The emulated BLE side of the device emulator: a bumble GATT peripheral on a virtual link.

No radio exists here, so the emulator runs a complete BLE peripheral on bumble (host stack,
GATT server, the imusic service of firmware_bridge/BLE.md) attached to a bumble ``LocalLink``
(a software "air" that carries link-layer PDUs between controllers in this process). A second
virtual controller on the same link is exposed to the host side as an HCI transport on a local
TCP socket: ``hci_spec`` (``tcp-client:127.0.0.1:PORT``) is what a host passes to
``BleTransport(hci=...)`` / ``IMUSIC_BLE_HCI``. The host then does what it does with a real USB
dongle: scan, connect, exchange the MTU, discover, subscribe, write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from imusic.firmware_bridge.transports.ble import COMMANDS_UUID, FRAMES_UUID, SERVICE_UUID

log = logging.getLogger(__name__)


class _HciServer:
    """HCI over TCP on 127.0.0.1 for one host at a time: the host-side virtual controller's
    "USB cable". The latest connection wins; a stale connection's late close does not cut off
    its successor (bumble's own tcp-server transport shares one sink and would)."""

    def __init__(self) -> None:
        self._server: Any = None
        self._current: Any = None

    async def start(self, controller: Any) -> int:
        """Listen on an ephemeral port; bytes from the host go to ``controller``."""
        from bumble.transport.common import StreamPacketSource

        server = self

        class _Connection(asyncio.Protocol):
            def connection_made(self, transport: Any) -> None:
                self.transport = transport
                self.source = StreamPacketSource()  # a fresh HCI parser per host connection
                self.source.set_packet_sink(controller)
                if server._current is not None:
                    server._current.close()
                server._current = transport

            def data_received(self, data: bytes) -> None:
                self.source.data_received(data)

            def connection_lost(self, exc: Exception | None) -> None:
                if server._current is self.transport:
                    server._current = None

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(_Connection, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    def on_packet(self, packet: bytes) -> None:
        """Controller -> host HCI packet (dropped while no host is attached, as on a cable)."""
        if self._current is not None:
            self._current.write(packet)

    def close(self) -> None:
        """Stop listening and drop the host connection."""
        if self._current is not None:
            self._current.close()
            self._current = None
        if self._server is not None:
            self._server.close()
            self._server = None


class BlePeripheral:
    """The wearable's GATT server, advertising ``name`` and the imusic service.

    ``send(data)`` streams protocol bytes to the subscribed host as notifications of at most
    ATT_MTU-3 bytes (``max_chunk`` cuts smaller, ``cut`` chooses each piece's size, to test
    reassembly); command bytes the host writes arrive on ``commands`` (an asyncio.Queue).
    """

    def __init__(self, name: str, *, address: str = "C0:FF:EE:00:00:01",
                 max_chunk: int | None = None, cut: Any = None) -> None:
        self.device_name = name
        self.address = address
        self.max_chunk = max_chunk
        self.cut = cut
        """Optional callable ``cut(limit) -> int`` choosing each notification's size (tests)."""
        self.commands: asyncio.Queue[bytes] = asyncio.Queue()
        self.hci_spec = ""
        self.notifications = 0
        self.disconnects = 0
        self._link: Any = None
        self._device: Any = None
        self._frames_char: Any = None
        self._hci_transport: Any = None
        self._host_controller: Any = None
        self._subscribed: set[Any] = set()
        self._subscribed_event = asyncio.Event()

    async def start(self) -> None:
        """Power on, expose the host-side HCI socket and start advertising."""
        from bumble import gatt
        from bumble.controller import Controller
        from bumble.core import UUID, AdvertisingData
        from bumble.device import Device
        from bumble.hci import Address
        from bumble.host import Host
        from bumble.link import LocalLink
        from bumble.transport.common import AsyncPipeSink

        self._link = LocalLink()
        controller = Controller("wearable", link=self._link, public_address=self.address)
        self._device = Device(name=self.device_name, address=Address(self.address),
                              host=Host(controller, AsyncPipeSink(controller)))
        self._frames_char = gatt.Characteristic(
            FRAMES_UUID, gatt.Characteristic.Properties.NOTIFY,
            gatt.Characteristic.Permissions(0), b"")
        commands_char = gatt.Characteristic(
            COMMANDS_UUID,
            gatt.Characteristic.Properties.WRITE
            | gatt.Characteristic.Properties.WRITE_WITHOUT_RESPONSE,
            gatt.Characteristic.Permissions.WRITEABLE,
            gatt.CharacteristicValue(write=self._on_write))
        self._device.add_service(gatt.Service(SERVICE_UUID, [self._frames_char, commands_char]))
        self._device.on("connection", self._on_connection)
        self._frames_char.on("subscription", self._on_subscription)
        await self._device.power_on()

        self._hci_transport = _HciServer()
        self._host_controller = Controller("host-radio", host_sink=self._hci_transport,
                                           link=self._link)
        port = await self._hci_transport.start(self._host_controller)
        self.hci_spec = f"tcp-client:127.0.0.1:{port}"

        # Legacy advertising holds 31 bytes: flags (3) + the 128-bit service UUID (18) leave
        # room for an 8-byte shortened name; the full name goes in the scan response.
        adv = bytes(AdvertisingData([
            (AdvertisingData.FLAGS, bytes([0x06])),  # LE general discoverable, no BR/EDR
            (AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
             bytes(UUID(SERVICE_UUID))),
            (AdvertisingData.SHORTENED_LOCAL_NAME, self.device_name.encode("utf-8")[:8]),
        ]))
        scan_response = bytes(AdvertisingData([
            (AdvertisingData.COMPLETE_LOCAL_NAME, self.device_name.encode("utf-8")[:29]),
        ]))
        # auto_restart: advertise again after each disconnection, as the firmware does
        await self._device.start_advertising(advertising_data=adv,
                                             scan_response_data=scan_response,
                                             auto_restart=True,
                                             advertising_interval_min=20.0,
                                             advertising_interval_max=20.0)

    def _on_connection(self, connection: Any) -> None:
        log.info("BLE: host %s connected", connection.peer_address)
        connection.on("disconnection", lambda reason: self._on_disconnection(connection))

    def _on_disconnection(self, connection: Any) -> None:
        self._subscribed.discard(connection)
        if not self._subscribed:
            self._subscribed_event.clear()

    def _on_subscription(self, connection: Any, notify_enabled: bool, indicate_enabled: bool
                         ) -> None:
        if notify_enabled:
            self._subscribed.add(connection)
            self._subscribed_event.set()
        else:
            self._on_disconnection(connection)

    def _on_write(self, connection: Any, value: bytes) -> None:
        self.commands.put_nowait(bytes(value))

    @property
    def connected(self) -> bool:
        """A host is connected and subscribed to FRAMES."""
        return bool(self._subscribed)

    async def wait_subscribed(self, timeout: float | None = None) -> bool:
        """Wait until a host subscribes (True) or ``timeout`` passes (False)."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._subscribed_event.wait(), timeout)
        return self.connected

    async def send(self, data: bytes) -> bool:
        """Notify ``data`` to every subscribed host, cut to the MTU; False if nobody listens."""
        if not self._subscribed:
            return False
        for connection in list(self._subscribed):
            limit = connection.att_mtu - 3
            if self.max_chunk:
                limit = min(limit, self.max_chunk)
            pos = 0
            while pos < len(data):
                n = limit if self.cut is None else max(1, min(limit, int(self.cut(limit))))
                with contextlib.suppress(Exception):  # a link lost mid-send: drop, as a radio does
                    await self._device.notify_subscriber(
                        connection, self._frames_char, data[pos:pos + n])
                    self.notifications += 1
                pos += n
        return True

    async def drop_connections(self) -> int:
        """Disconnect every host (a fault: the link drops); advertising restarts by itself."""
        dropped = 0
        for connection in list(self._device.connections.values()):
            with contextlib.suppress(Exception):
                await connection.disconnect()
                dropped += 1
        self.disconnects += dropped
        return dropped

    async def close(self) -> None:
        """Disconnect, stop advertising and close the host-side socket; never raises."""
        if self._device is not None:
            with contextlib.suppress(Exception):
                await self.drop_connections()
            with contextlib.suppress(Exception):
                await self._device.stop_advertising()
            with contextlib.suppress(Exception):
                await self._device.power_off()
        if self._hci_transport is not None:
            with contextlib.suppress(Exception):
                self._hci_transport.close()
            self._hci_transport = None

    async def __aenter__(self) -> "BlePeripheral":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
