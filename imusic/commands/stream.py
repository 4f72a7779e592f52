"""``imusic stream``: one wearable (serial, BLE or Wi-Fi UDP) to an IMU LSL stream."""

from __future__ import annotations

import argparse

HELP = "stream a wearable (serial, BLE or Wi-Fi UDP) to an IMU LSL stream, with live health"
EXAMPLE = "imusic stream --serial /dev/ttyACM0 --rig imusic11 --rate 100"


def _int(text: str) -> int:
    return int(text, 0)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``imusic stream``."""
    link = parser.add_mutually_exclusive_group(required=True)
    link.add_argument("--serial", metavar="PATH", help="serial port (/dev/ttyACM0, COM3, a pty)")
    link.add_argument("--ble", metavar="ADDRESS", help="BLE address, as 'imusic devices' shows it")
    link.add_argument("--udp", metavar="PORT", type=int,
                      help="listen for a Wi-Fi wearable on this UDP port (e.g. 9000)")
    parser.add_argument("--udp-host", default="0.0.0.0", metavar="HOST",
                        help="address to listen on with --udp (default all interfaces)")
    parser.add_argument("--allow", action="append", default=None, metavar="HOST",
                        help="with --udp: accept datagrams only from this host (name or IP; "
                             "repeat for several wearables); default any sender")
    parser.add_argument("--device-id", type=_int, default=None, metavar="ID",
                        help="with several devices on one link (UDP): the device id to stream "
                             "(low 32 bits of the serial; default the first one heard)")
    parser.add_argument("--all-devices", action="store_true",
                        help="with --udp: stream every wearable heard on the port, one LSL "
                             "stream each (names get the device id appended)")
    parser.add_argument("--baud", type=int, default=921600, help="serial baud rate (default 921600)")
    parser.add_argument("--rig", default="auto", metavar="NAME|PATH",
                        help="rig the device must match (default: the rig the device names)")
    parser.add_argument("--rate", type=int, default=None, metavar="HZ",
                        help="ask the device for this sample rate (25..400; default: keep)")
    parser.add_argument("--name", default=None,
                        help="LSL stream name (default imusic-<serial>); events go to NAME-events")
    parser.add_argument("--seconds", type=float, default=None, metavar="N",
                        help="stop after N seconds (default: until Ctrl-C or SIGTERM)")
    parser.add_argument("--silence", type=float, default=1.0, metavar="S",
                        help="seconds without samples before reconnecting (default 1)")
    parser.add_argument("--summary-json", default=None, metavar="PATH",
                        help="write the final health summary here as JSON")
    parser.add_argument("--quiet", action="store_true", help="no live health line")


def _factory(args: argparse.Namespace):
    """A callable making a fresh transport for the chosen link."""
    from imusic.firmware_bridge.transports import link_factory

    try:
        return link_factory(serial=args.serial, baud=args.baud, ble=args.ble, udp=args.udp,
                            udp_host=args.udp_host, allow=args.allow)
    except ImportError as err:
        raise SystemExit(f"imusic stream: BLE is not available here ({err}); "
                         "install bleak, or use --serial / --udp") from err


def summary(health, seconds: float) -> str:
    """The lines printed when streaming stops."""
    h = health
    drift = f"{h.drift_ppm:+.1f} ppm, residual {h.residual_ms:.2f} ms" if h.drift_ppm is not None else "-"
    return "\n".join([
        f"stopped after {seconds:.1f} s: {h.device or 'no device'} on {h.transport}",
        f"  samples {h.samples}  lost {h.lost} ({100 * h.loss:.2f}%)  gaps {h.gaps}",
        f"  crc errors {h.crc_errors}  bad frames {h.frame_errors}"
        + (f"  bad messages {h.message_errors}" if h.message_errors else "")
        + f"  reconnects {h.reconnects}"
        f"  reboots {h.reboots}",
        f"  clock drift {drift}",
        f"  battery {h.battery_pct if h.battery_pct not in (None, 255) else '-'}%"
        + (f"  last error: {h.last_error}" if h.last_error else ""),
    ])


def nothing_received(health, seconds: float) -> str:
    """The one line when a bounded run (``--seconds``) got no sample at all."""
    why = health.last_error or (
        "no device heard: is the wearable on, on this network and sending to this port?"
        if health.state in ("listening", "stopped") and health.transport.startswith("udp")
        else "no device answered")
    return (f"imusic stream: nothing received on {health.transport or 'the link'} in "
            f"{seconds:.1f} s: {why}")


async def stream(args: argparse.Namespace, stop=None) -> int:
    """The async body of ``imusic stream`` (also callable in-process with a ``stop`` event)."""
    import json
    import sys

    from imusic.firmware_bridge.device import DeviceError, DeviceSession, SessionConfig
    from imusic.commands._link import allow_error
    from imusic.runner import Runner

    bad_allow = allow_error(args, "stream")
    if bad_allow:
        print(bad_allow, file=sys.stderr)
        return 2
    rig = args.rig
    if rig and rig != "auto":
        from imusic.hardware.rig import RigError, load_rig

        try:
            rig = load_rig(rig)
        except (RigError, OSError, KeyError, ValueError) as err:
            print(f"imusic stream: cannot load rig {args.rig!r}: {err}", file=sys.stderr)
            return 2
    if args.all_devices:
        if args.udp is None:
            print("imusic stream: --all-devices goes with --udp PORT", file=sys.stderr)
            return 2
        return await stream_all(args, rig, stop)
    config = SessionConfig(rate_hz=args.rate, rig=rig, name=args.name, device_id=args.device_id,
                           silence_s=args.silence)
    session = DeviceSession(_factory(args), config)
    # the health line: in place on a terminal, else every 5 s
    runner = Runner(args.seconds, status=session.health.line, every_s=0.5, quiet=args.quiet,
                    plain_every_s=5.0, stop=stop)
    code = 0
    try:
        await runner.run(session.run(runner.stop))
    except DeviceError as err:
        runner.say(f"imusic stream: {err}")
        code = 1
    elapsed = runner.elapsed
    print(summary(session.health, elapsed))
    if code == 0 and args.seconds is not None and session.health.samples == 0:
        print(nothing_received(session.health, elapsed), file=sys.stderr)
        code = 1
    if args.summary_json:
        record = {"seconds": elapsed, "health": session.health.as_dict(),
                  "decoder": session.decoder.stats.as_dict(),
                  "clock": session.clock.fit.as_dict() if session.clock.ready else None,
                  "events": list(session.event_log)}
        with open(args.summary_json, "w") as f:
            json.dump(record, f, indent=1, default=str)
    return code


async def stream_all(args: argparse.Namespace, rig, stop=None) -> int:
    """Every wearable heard on one UDP port, each its own session and LSL stream."""
    import asyncio
    import contextlib
    import json
    import sys

    from imusic.firmware_bridge.device import DeviceError, DeviceSession, SessionConfig
    from imusic.firmware_bridge.transports.base import TransportError
    from imusic.firmware_bridge.transports.udp import UdpHub
    from imusic.runner import Runner

    hub = UdpHub(args.udp, args.udp_host, allow=args.allow)
    try:
        await hub.__aenter__()
    except TransportError as err:
        print(f"imusic stream: {err}", file=sys.stderr)
        return 1
    sessions: dict[int, tuple[DeviceSession, asyncio.Task]] = {}
    # each device's health line every 5 s, never in place (one line per device)
    runner = Runner(args.seconds, every_s=0.5, quiet=args.quiet, in_place=False,
                    plain_every_s=5.0, stop=stop,
                    status=lambda: "\n".join(s.health.line() for s, _ in sessions.values()))
    failed: list[int] = []

    async def serve(stop: asyncio.Event) -> None:
        while not stop.is_set():
            ch = None
            with contextlib.suppress(asyncio.TimeoutError):
                ch = await asyncio.wait_for(hub.new_devices.get(), 0.5)
            if ch is not None:
                name = f"{args.name}-{ch.device_id:08x}" if args.name else None
                config = SessionConfig(rate_hz=args.rate, rig=rig, name=name,
                                       device_id=ch.device_id, silence_s=args.silence)
                session = DeviceSession(lambda ch=ch: ch, config)
                sessions[ch.device_id] = (session, asyncio.create_task(session.run(stop)))
                runner.say(f"device {ch.device_id:08x} heard on {hub.link.name}")
            for dev, (session, task) in list(sessions.items()):
                if task.done() and not stop.is_set() and dev not in failed:
                    err = task.exception()
                    if isinstance(err, DeviceError):
                        runner.say(f"imusic stream: device {dev:08x}: {err}")
                        failed.append(dev)

    try:
        await runner.run(serve(runner.stop))
    finally:
        for _, task in sessions.values():
            with contextlib.suppress(BaseException):
                await task
        await hub.close()
    code = 1 if failed else 0
    elapsed = runner.elapsed
    for session, _ in sessions.values():
        print(summary(session.health, elapsed))
    if not sessions:
        print(f"imusic stream: no device heard on {hub.link.name} in {elapsed:.1f} s: is the "
              f"wearable on, on this network and sending to this port?", file=sys.stderr)
        if args.seconds is not None:
            code = 1
    if args.summary_json:
        with open(args.summary_json, "w") as f:
            json.dump({"seconds": elapsed, "unroutable_frames": hub.unroutable,
                       "devices": {f"{d:08x}": {"health": s.health.as_dict(),
                                                "decoder": s.decoder.stats.as_dict(),
                                                "events": list(s.event_log)}
                                   for d, (s, _) in sessions.items()}},
                      f, indent=1, default=str)
    return code


def run(args: argparse.Namespace) -> int:
    """Stream until --seconds, Ctrl-C or SIGTERM; the outlet is always closed."""
    import asyncio

    return asyncio.run(stream(args))
