"""Async links to devices: serial (USB CDC / UART), Wi-Fi UDP and BLE, all behind the
``Transport`` interface of ``base``."""

from firmware_bridge.transports.base import (Transport, TransportClosed, TransportError,
                                             TransportFactory)

__all__ = ["Transport", "TransportClosed", "TransportError", "TransportFactory"]
