"""Options shared by the commands that read a wearable (``live``, ``hybrid``)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:   # imported where used: every command's parser imports this module, and
    # imusic.sources pulls in numpy, pylsl and the device bridge (13 MB in imusic record)
    from imusic.sources import LinkOptions


def add_link_arguments(parser: argparse.ArgumentParser) -> None:
    """``--serial PATH | --udp PORT | --ble ADDRESS | --lsl [NAME]`` and ``--rig``."""
    link = parser.add_mutually_exclusive_group(required=True)
    link.add_argument("--serial", metavar="PATH", help="wearable on a serial port (or a pty)")
    link.add_argument("--udp", metavar="PORT", type=int, help="Wi-Fi wearable on this UDP port")
    link.add_argument("--ble", metavar="ADDRESS", help="BLE wearable (address or name)")
    link.add_argument("--lsl", metavar="NAME", nargs="?", const="",
                      help="an IMU LSL stream already published ('imusic stream'); "
                           "NAME or source_id; bare --lsl takes the only one there is "
                           "(and refuses to choose among several)")
    parser.add_argument("--udp-host", default="0.0.0.0", help="address to listen on with --udp")
    parser.add_argument("--allow", action="append", default=None, metavar="HOST",
                        help="with --udp: accept datagrams only from this host (repeatable)")
    parser.add_argument("--rig", default="auto", metavar="NAME|PATH",
                        help="rig the wearable must match (default: the rig it names)")
    parser.add_argument("--model", default=None, metavar="CKPT",
                        help="checkpoint folder (default: the bundled one)")
    parser.add_argument("--steps", type=int, default=None, metavar="N",
                        help="DDIM steps per frame (default: the checkpoint's)")
    parser.add_argument("--max-behind-ms", type=float, default=250.0, metavar="MS",
                        help="a machine too slow for the model skips frames more than MS "
                             "behind the newest sample (default 250; 34 keeps the output "
                             "within ~2 frames of the wearable on a busy machine, at the cost "
                             "of more skipped frames)")
    parser.add_argument("--recalibrate-on-marker", action="store_true",
                        help="take the neutral pose again whenever any LSL Markers stream "
                             "sends 'neutral' or 'calibrate', or a guided session's neutral "
                             "step starts (imusic session)")
    parser.add_argument("--seconds", type=float, default=None, metavar="N",
                        help="stop after N seconds (default: Ctrl-C or SIGTERM)")


def allow_error(args: argparse.Namespace, command: str, needs_udp: bool = True) -> str | None:
    """The one line to print (exit 2) when ``--allow`` is misused: without ``--udp`` where it
    needs one, or naming a host that does not resolve; None when it is fine or absent."""
    if not getattr(args, "allow", None):
        return None
    if needs_udp and getattr(args, "udp", None) is None:
        return f"imusic {command}: --allow goes with --udp PORT"
    from imusic.firmware_bridge.transports.base import TransportError
    from imusic.firmware_bridge.transports.udp import resolve_hosts

    try:
        resolve_hosts(args.allow)
    except TransportError as err:
        return f"imusic {command}: {err}"
    return None


def link_options(args: argparse.Namespace) -> LinkOptions:
    """The ``LinkOptions`` the parsed arguments name."""
    from imusic.sources import LinkOptions

    return LinkOptions(serial=args.serial, udp=args.udp, udp_host=args.udp_host, ble=args.ble,
                       lsl=args.lsl, rig=args.rig, allow=tuple(args.allow or ()))
