"""Async links to devices: serial (USB CDC / UART), Wi-Fi UDP and BLE, all behind the
``Transport`` interface of ``base``."""

from __future__ import annotations

from imusic.firmware_bridge.transports.base import (Transport, TransportClosed, TransportError,
                                             TransportFactory)

__all__ = ["Transport", "TransportClosed", "TransportError", "TransportFactory", "link_factory"]


def link_factory(serial: str | None = None, baud: int = 921600, ble: str | None = None,
                 udp: int | None = None, udp_host: str = "0.0.0.0",
                 allow: tuple[str, ...] | list[str] | None = None) -> TransportFactory:
    """A callable making a fresh transport for the one link named (serial port, BLE address or
    UDP port; ``allow``: the only hosts a UDP link accepts datagrams from). A UDP link is one
    persistent socket for the whole session. Raises ImportError when the BLE stack (bleak)
    cannot be imported."""
    if serial:
        from imusic.firmware_bridge.transports.serial import SerialTransport

        return lambda: SerialTransport(serial, baud)
    if ble:
        from imusic.firmware_bridge.transports.ble import BleTransport

        return lambda: BleTransport(ble)
    if udp is None:
        raise ValueError("name a link: a serial port, a BLE address or a UDP port")
    from imusic.firmware_bridge.transports.udp import UdpTransport

    link = UdpTransport(udp, udp_host, allow=allow)
    return lambda: link
