"""A bleak backend that runs on the bumble Bluetooth host stack instead of the OS.

bleak's front-end classes (``bleak.BleakClient``, ``bleak.BleakScanner``) take a ``backend=``
type; the classes here are such backends. They drive a bumble ``Device`` (a full BLE host:
HCI, L2CAP, ATT, GATT client) over an HCI transport named by a bumble transport spec, e.g.

* ``tcp-client:127.0.0.1:PORT``: the virtual controller the device emulator exposes
  (``imusic emulate --transport ble``), sharing a bumble ``LocalLink`` with the emulated
  peripheral, so no radio is involved;
* ``usb:0`` or ``serial:/dev/ttyACM0``: a real HCI controller (a USB dongle), bypassing BlueZ.

The transport code (``firmware_bridge.transports.ble``) uses the bleak front end in both cases,
so the bytes and the call path are the same whether the OS backend or this one is underneath.
Pairing is not supported (the imusic wearable needs none).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid as uuidlib
from typing import Any, Callable

from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakError

log = logging.getLogger(__name__)

DEFAULT_MTU = 247
"""ATT MTU the client requests after connecting (the largest a BLE 4.2+ data PDU carries)."""

_CENTRAL_ADDRESS = "F1:1E:0C:A7:00:01"  # static random address of the host side


def uuid_str(u: Any) -> str:
    """A bumble ``UUID`` as bleak spells it: lower-case 128-bit with dashes."""
    raw = u.to_bytes(force_128=True)  # bumble keeps UUIDs little-endian
    return str(uuidlib.UUID(bytes=bytes(reversed(raw))))


class _Central:
    """One bumble host on one HCI transport, shared by the scanners and clients that name it."""

    _open: dict[str, "_Central"] = {}

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.users = 0
        self.transport: Any = None
        self.device: Any = None
        self._lock = asyncio.Lock()

    @classmethod
    async def acquire(cls, spec: str) -> "_Central":
        central = cls._open.get(spec)
        if central is None or central.device is None:
            central = cls._open[spec] = cls(spec)
        async with central._lock:
            if central.device is None:
                await central._start()
            central.users += 1
        return central

    async def _start(self) -> None:
        from bumble.device import Device
        from bumble.hci import Address
        from bumble.transport import open_transport

        try:
            self.transport = await open_transport(self.spec)
        except (OSError, ValueError) as err:
            raise BleakError(
                f"cannot open the bumble HCI transport {self.spec!r}: {err}. Is the emulator "
                "('imusic emulate --transport ble') running, and is IMUSIC_BLE_HCI what it printed?"
            ) from err
        self.device = Device.with_hci(
            "imusic-host", Address(_CENTRAL_ADDRESS), self.transport.source, self.transport.sink)
        await self.device.power_on()

    async def release(self) -> None:
        self.users -= 1
        if self.users > 0:
            return
        self._open.pop(self.spec, None)
        device, transport, self.device, self.transport = self.device, self.transport, None, None
        if device is not None:
            with contextlib.suppress(Exception):
                await device.power_off()
        if transport is not None:
            with contextlib.suppress(Exception):
                await transport.close()


def _hci_spec(kwargs: dict[str, Any]) -> str:
    spec = kwargs.get("hci")
    if not spec:
        raise BleakError("the bumble backend needs hci='<bumble transport spec>' "
                         "(e.g. tcp-client:127.0.0.1:PORT as printed by 'imusic emulate')")
    return str(spec)


class BumbleBleakScanner(BaseBleakScanner):
    """bleak scanner backend on a bumble host (``BleakScanner(..., backend=..., hci=SPEC)``)."""

    def __init__(self, detection_callback: Any, service_uuids: list[str] | None,
                 scanning_mode: str = "active", **kwargs: Any) -> None:
        super().__init__(detection_callback, service_uuids)
        self._spec = _hci_spec(kwargs)
        self._active = scanning_mode != "passive"
        self._central: _Central | None = None

    async def start(self) -> None:
        """Start scanning (opens the HCI transport on first use)."""
        self._central = await _Central.acquire(self._spec)
        self._central.device.on("advertisement", self._on_advertisement)
        await self._central.device.start_scanning(active=self._active, filter_duplicates=False)

    async def stop(self) -> None:
        """Stop scanning and let go of the host."""
        central, self._central = self._central, None
        if central is None:
            return
        with contextlib.suppress(Exception):
            central.device.remove_listener("advertisement", self._on_advertisement)
            await central.device.stop_scanning()
        await central.release()

    def _on_advertisement(self, advertisement: Any) -> None:
        from bumble.core import AdvertisingData

        data = advertisement.data
        name = None
        for kind in (AdvertisingData.COMPLETE_LOCAL_NAME, AdvertisingData.SHORTENED_LOCAL_NAME):
            raw = data.get(kind, raw=True)
            if raw:
                name = bytes(raw).decode("utf-8", "replace")
                break
        uuids: list[str] = []
        for kind in (AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
                     AdvertisingData.INCOMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
                     AdvertisingData.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS,
                     AdvertisingData.INCOMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS):
            for item in data.get_all(kind):
                items = item if isinstance(item, list) else [item]
                uuids.extend(u for u in map(uuid_str, items) if u not in uuids)
        manufacturer: dict[int, bytes] = {}
        for item in data.get_all(AdvertisingData.MANUFACTURER_SPECIFIC_DATA):
            company, payload = item
            manufacturer[int(company)] = bytes(payload)
        adv = AdvertisementData(
            local_name=name, manufacturer_data=manufacturer, service_data={},
            service_uuids=uuids, tx_power=None, rssi=int(advertisement.rssi),
            platform_data=(advertisement,))
        if not self.is_allowed_uuid(uuids):
            return
        address = str(advertisement.address)
        device = self.create_or_update_device(address, address, name, advertisement.address, adv)
        self.call_detection_callbacks(device, adv)


_PROPERTY_NAMES = (
    (0x01, "broadcast"), (0x02, "read"), (0x04, "write-without-response"), (0x08, "write"),
    (0x10, "notify"), (0x20, "indicate"), (0x40, "authenticated-signed-writes"),
    (0x80, "extended-properties"),
)


class BumbleBleakClient(BaseBleakClient):
    """bleak client backend on a bumble host (``BleakClient(addr, backend=..., hci=SPEC)``).

    ``connect`` connects over LE, exchanges the ATT MTU (``mtu=``, default 247), discovers the
    GATT database and reports a link loss through bleak's ``disconnected_callback``.
    """

    def __init__(self, address_or_ble_device: BLEDevice | str, **kwargs: Any) -> None:
        super().__init__(address_or_ble_device,
                         disconnected_callback=kwargs.get("disconnected_callback"),
                         timeout=kwargs.get("timeout", 10.0))
        self._spec = _hci_spec(kwargs)
        self._want_mtu = int(kwargs.get("mtu", DEFAULT_MTU))
        self._peer_address = (address_or_ble_device.details
                              if isinstance(address_or_ble_device, BLEDevice)
                              and address_or_ble_device.details is not None
                              else self.address)
        self._central: _Central | None = None
        self._connection: Any = None
        self._peer: Any = None

    @property
    def name(self) -> str:
        """The peer's address (bumble does not read the GAP name unasked)."""
        return str(self.address)

    @property
    def mtu_size(self) -> int:
        """The negotiated ATT MTU."""
        if self._connection is None:
            raise BleakError(f"{self.address}: not connected")
        return int(self._connection.att_mtu)

    @property
    def is_connected(self) -> bool:
        """Whether the LE link is up."""
        return self._connection is not None

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        """Connect, exchange the MTU and discover services, characteristics and descriptors."""
        from bumble.core import PhysicalTransport
        from bumble.device import Peer
        from bumble.hci import Address

        self._central = await _Central.acquire(self._spec)
        address = self._peer_address
        if isinstance(address, str):
            address = Address(address)
        try:
            connection = await asyncio.wait_for(
                self._central.device.connect(address, transport=PhysicalTransport.LE),
                self._timeout)
        except (asyncio.TimeoutError, Exception) as err:
            await self._central.release()
            self._central = None
            raise BleakError(f"{self.address}: connection failed: {err!r}") from err
        self._connection = connection
        connection.on("disconnection", self._on_disconnection)
        self._peer = Peer(connection)
        await self._peer.request_mtu(self._want_mtu)
        await self._discover()

    async def _discover(self) -> None:
        collection = BleakGATTServiceCollection()
        for service in await self._peer.discover_services():
            bservice = BleakGATTService(service, service.handle, uuid_str(service.uuid))
            collection.add_service(bservice)
            for char in await service.discover_characteristics():
                props = [name for bit, name in _PROPERTY_NAMES if int(char.properties) & bit]
                bchar = BleakGATTCharacteristic(
                    char, char.handle, uuid_str(char.uuid), props,
                    lambda: self.mtu_size - 3, bservice)
                collection.add_characteristic(bchar)
                for desc in await char.discover_descriptors():
                    collection.add_descriptor(
                        BleakGATTDescriptor(desc, desc.handle, uuid_str(desc.type), bchar))
        self.services = collection

    def _on_disconnection(self, reason: int) -> None:
        log.info("%s: disconnected (HCI reason 0x%02x)", self.address, reason)
        self._connection = None
        self._peer = None
        central, self._central = self._central, None
        if central is not None:
            asyncio.get_running_loop().create_task(central.release())
        if self._disconnected_callback is not None:
            self._disconnected_callback()

    async def disconnect(self) -> None:
        """Drop the link (no-op when already down)."""
        connection = self._connection
        if connection is None:
            return
        done = asyncio.get_running_loop().create_future()
        connection.once("disconnection", lambda *_: done.done() or done.set_result(None))
        with contextlib.suppress(Exception):
            await connection.disconnect()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(done, 2.0)

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        """Not supported: the imusic wearable uses no pairing."""
        raise BleakError("pairing is not supported by the bumble backend")

    async def unpair(self) -> None:
        """Not supported: the imusic wearable uses no pairing."""
        raise BleakError("pairing is not supported by the bumble backend")

    def _need(self) -> Any:
        if self._peer is None:
            raise BleakError(f"{self.address}: not connected")
        return self._peer

    async def read_gatt_char(self, characteristic: BleakGATTCharacteristic, **kwargs: Any
                             ) -> bytearray:
        """Read a characteristic value."""
        self._need()
        return bytearray(await characteristic.obj.read_value())

    async def read_gatt_descriptor(self, descriptor: BleakGATTDescriptor, **kwargs: Any
                                   ) -> bytearray:
        """Read a descriptor value."""
        return bytearray(await self._need().read_value(descriptor.handle))

    async def write_gatt_char(self, characteristic: BleakGATTCharacteristic, data: Any,
                              response: bool) -> None:
        """Write a characteristic (ATT Write Request when ``response`` else Write Command)."""
        self._need()
        await characteristic.obj.write_value(bytes(data), with_response=response)

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data: Any) -> None:
        """Write a descriptor value."""
        await self._need().write_value(descriptor.handle, bytes(data), with_response=True)

    async def start_notify(self, characteristic: BleakGATTCharacteristic,
                           callback: Callable[[bytearray], None], **kwargs: Any) -> None:
        """Enable notifications (writes the CCCD) and route them to ``callback``."""
        self._need()
        await characteristic.obj.subscribe(lambda value: callback(bytearray(value)))

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        """Disable notifications."""
        self._need()
        await characteristic.obj.unsubscribe()
