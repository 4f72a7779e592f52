"""``imusic devices``: wearables this machine can reach: serial ports, BLE devices advertising
the imusic service, and Wi-Fi devices heard on a UDP port."""

from __future__ import annotations

import argparse

HELP = "list wearables: serial ports, BLE devices advertising the service, UDP devices heard"
EXAMPLE = "imusic devices --udp 9000 --listen 2"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``imusic devices``."""
    parser.add_argument("--udp", type=int, default=9000, metavar="PORT",
                        help="UDP port to listen on for Wi-Fi wearables (default 9000)")
    parser.add_argument("--udp-host", default="0.0.0.0", metavar="HOST",
                        help="address to listen on (default all interfaces)")
    parser.add_argument("--allow", action="append", default=None, metavar="HOST",
                        help="list only UDP wearables sending from this host (repeatable)")
    parser.add_argument("--listen", type=float, default=1.5, metavar="S",
                        help="seconds to listen on UDP and scan BLE (default 1.5)")
    parser.add_argument("--all-ports", action="store_true",
                        help="list every serial port, not only USB ones")
    parser.add_argument("--no-serial", action="store_true", help="skip serial ports")
    parser.add_argument("--no-ble", action="store_true", help="skip the BLE scan")
    parser.add_argument("--no-udp", action="store_true", help="skip listening on UDP")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")


def serial_ports(all_ports: bool = False) -> list[dict]:
    """Serial ports (pyserial's list_ports): USB ones, or every one with ``all_ports``."""
    from serial.tools import list_ports

    out = []
    for p in list_ports.comports():
        if not all_ports and p.vid is None:
            continue  # a built-in UART with nothing on it, most likely
        out.append({"port": p.device, "description": p.description, "hwid": p.hwid,
                    "serial_number": p.serial_number})
    return out


def emulated_ports() -> list[dict]:
    """Serial ports of emulated wearables running on this machine (``imusic emulate``
    makes a pty and a stable link to it: ``<tmp>/imusic-emu-*/tty``)."""
    import glob
    import os
    import tempfile

    live = _open_pty_indexes()
    out = []
    for link in sorted(glob.glob(os.path.join(tempfile.gettempdir(), "imusic-emu-*", "tty"))):
        target = os.path.realpath(link)
        if not os.path.exists(target):
            continue  # the emulator is gone
        index = os.path.basename(target)
        if live is not None and (not index.isdigit() or int(index) not in live):
            continue  # left behind by a killed emulator
        if os.stat(target).st_ctime > os.lstat(link).st_mtime + 1.0:
            continue  # the pty number was handed out again after the link was made: stale
        out.append({"port": link, "description": f"imusic emulator ({target})",
                    "hwid": "emulated", "serial_number": None})
    return out


def _open_pty_indexes() -> set[int] | None:
    """Numbers of the ptys whose master side some process holds open (Linux /proc), or None
    where that cannot be told."""
    import os

    if not os.path.isdir("/proc/self/fdinfo"):
        return None
    out: set[int] = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"{fd_dir}/{fd}") != "/dev/ptmx":
                    continue
                with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                    for line in f:
                        if line.startswith("tty-index:"):
                            out.add(int(line.split(":", 1)[1]))
            except (OSError, ValueError):
                continue
    return out


async def ble_devices(timeout: float) -> tuple[list[dict], str | None]:
    """BLE wearables advertising the service, or ([], why not) when BLE is unavailable."""
    try:
        from imusic.firmware_bridge.transports.ble import scan
    except Exception as err:  # bleak missing, or the module not importable here
        return [], f"BLE support is not available ({err})"
    try:
        found = await scan(timeout)
    except Exception as err:  # no adapter, no BlueZ/D-Bus, permissions...
        return [], str(err)
    return [{"address": d.address, "name": d.name, "rssi": d.rssi} for d in found], None


async def udp_devices(port: int, host: str, seconds: float,
                      allow: list[str] | None = None) -> tuple[list[dict], str | None]:
    """Devices whose frames arrive on UDP ``host:port`` within ``seconds`` (a wearable sends
    STATUS about once a second even when idle), with what they said about themselves."""
    import asyncio
    import contextlib
    import time

    from imusic.firmware_bridge import protocol as P
    from imusic.firmware_bridge.transports.base import TransportError
    from imusic.firmware_bridge.transports.udp import UdpTransport

    link = UdpTransport(port, host, allow=allow)
    try:
        await link.open()
    except TransportError as err:
        return [], str(err)
    dec = P.Decoder()
    seen: dict[int, dict] = {}
    asked: set[int] = set()
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            try:
                data = await asyncio.wait_for(link.read(), max(0.01, end - time.monotonic()))
            except asyncio.TimeoutError:
                break
            for dev, msg in dec.feed(data):
                rec = seen.setdefault(dev, {"device_id": f"{dev:08x}", "frames": 0})
                rec["frames"] += 1
                if isinstance(msg, P.DeviceInfo):
                    rec.update(name=msg.name, serial=f"{msg.serial:016x}", rig=msg.rig_id,
                               sensors=msg.sensor_count, rate_hz=msg.rate_hz,
                               firmware=msg.fw_string)
                elif isinstance(msg, P.Status):
                    rec.update(battery_pct=msg.battery_pct)
                elif isinstance(msg, P.Samples):
                    rec["streaming"] = True
                if dev not in asked:  # ask who it is (the answer comes within the window)
                    asked.add(dev)
                    with contextlib.suppress(TransportError):
                        await link.write(P.encode(P.CmdGetInfo(), dev))
        peers = list(link.peers)
    finally:
        await link.close()
    out = list(seen.values())
    if len(peers) == 1:
        for rec in out:
            rec["address"] = f"{peers[0][0]}:{peers[0][1]}"
    return out, None


def run(args: argparse.Namespace) -> int:
    """Look on every kind of link and print what answers."""
    import asyncio
    import json
    import sys

    async def look() -> dict:
        tasks = {}
        if not args.no_ble:
            tasks["ble"] = asyncio.create_task(ble_devices(args.listen))
        if not args.no_udp:
            tasks["udp"] = asyncio.create_task(udp_devices(args.udp, args.udp_host, args.listen,
                                                           args.allow))
        return {k: await t for k, t in tasks.items()}

    from imusic.commands._link import allow_error

    bad_allow = allow_error(args, "devices", needs_udp=False)
    if bad_allow:
        print(bad_allow, file=sys.stderr)
        return 2
    result: dict = {}
    if not args.no_serial:
        try:
            result["serial"] = (serial_ports(args.all_ports) + emulated_ports(), None)
        except Exception as err:
            result["serial"] = ([], f"cannot list serial ports: {err}")
    result.update(asyncio.run(look()))
    found_any = any(v[0] for v in result.values())
    if args.json:
        print(json.dumps({k: {"devices": v[0], "error": v[1]} for k, v in result.items()},
                         indent=1))
        return 0 if found_any else 1
    titles = {"serial": "serial ports", "ble": "BLE wearables (imusic service)",
              "udp": f"Wi-Fi wearables heard on UDP {args.udp_host}:{args.udp}"}
    for kind, (found, error) in result.items():
        print(f"{titles[kind]}:")
        if error:
            print(f"  unavailable: {error}")
        elif not found:
            print("  none")
        for d in found:
            if kind == "serial":
                print(f"  {d['port']:<20} {d['description']}  [{d['hwid']}]"
                      f"   -> imusic stream --serial {d['port']}")
            elif kind == "ble":
                print(f"  {d['address']:<20} {d['name'] or '?'}  rssi {d['rssi']} dBm"
                      f"   -> imusic stream --ble {d['address']}")
            else:
                extra = " ".join(f"{k}={d[k]}" for k in ("name", "serial", "rig", "sensors",
                                                         "rate_hz", "battery_pct", "address")
                                 if k in d)
                print(f"  device {d['device_id']}  {extra}"
                      f"   -> imusic stream --udp {args.udp} --device-id 0x{d['device_id']}")
    if not found_any:
        why = "; ".join(f"{titles[k]}: {v[1]}" for k, v in result.items() if v[1])
        print(f"imusic devices: no wearable found in {args.listen:g} s"
              + (f" ({why})" if why else "") + ": plug one in, switch it on, or start "
              "'imusic emulate'", file=sys.stderr)
        return 1
    return 0
