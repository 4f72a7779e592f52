"""``imusic emulate``: a virtual wearable (the twin speaking the wire protocol)."""

from __future__ import annotations

import argparse

HELP = "Run a virtual wearable: the digital twin speaking the wire protocol on a pty, UDP or BLE."
EXAMPLE = (
    "imusic emulate --transport serial --rig imusic11 --motion procedural --rate 100 --seconds 60"
    "\n  imusic emulate --transport udp --report orientation --no-gyro --no-mag --rate 60")


WALL_GRACE_S = 1.0
"""With --seconds N: exit at the latest N + this many seconds after streaming first began."""


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    try:
        return (host or "127.0.0.1", int(port))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}") from None


def _fraction(text: str) -> float:
    v = float(text)
    if not 0.0 <= v < 1.0:
        raise argparse.ArgumentTypeError(f"a fraction in [0, 1) is needed, got {text}")
    return v


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``imusic emulate``."""
    p.add_argument("--transport", choices=("serial", "udp", "ble"), default="serial",
                   help="serial: a new pseudo-terminal (its path is printed); udp: datagrams to "
                        "--udp; ble: an emulated BLE peripheral (prints the IMUSIC_BLE_HCI value "
                        "hosts use). Default serial.")
    p.add_argument("--rig", default="imusic11", help="rig name or JSON path (default imusic11)")
    p.add_argument("--motion", default="procedural",
                   help="'procedural' or a Live Link Face CSV take to drive the twin")
    p.add_argument("--rate", type=int, default=100, help="sample instants per second (25..400)")
    p.add_argument("--seconds", type=float, default=None,
                   help="stream N seconds of motion, then exit; also exit N seconds after "
                        "streaming first began if a host stopped the stream (default: until "
                        "Ctrl-C)")
    p.add_argument("--neutral-s", type=float, default=3.0, metavar="S",
                   help="a still neutral face and head for S seconds at the start, as a real "
                        "take starts (the model calibrates on it); 0: none (default 3)")
    p.add_argument("--udp", type=_host_port, default=("127.0.0.1", 9000), metavar="HOST:PORT",
                   help="where UDP datagrams go (default 127.0.0.1:9000)")
    p.add_argument("--seed", type=int, default=0, help="twin seed (motion, sensor errors, faults)")
    p.add_argument("--report", choices=("raw", "orientation"), default="raw",
                   help="raw: acc, gyro, mag as the reference wearable sends (default); "
                        "orientation: a device with on-board fusion (imufusion AHRS on the twin's "
                        "own readings) that sends acceleration + quaternion, like the IMUSIC "
                        "paper's ESP32, x-IMU3, Xsens DOT or BNO08x boards")
    p.add_argument("--no-gyro", action="store_true",
                   help="with --report orientation: do not send the gyroscope block "
                        "(the device still fuses with its gyro)")
    p.add_argument("--no-mag", action="store_true",
                   help="a device without magnetometer: no mag block, and 6-axis fusion "
                        "(heading drifts) in orientation mode")
    p.add_argument("--instants-per-frame", type=int, default=None,
                   help="sample instants per SAMPLES frame (default about 50 frames/s)")
    p.add_argument("--autostart", action=argparse.BooleanOptionalAction, default=None,
                   help="stream without waiting for START (default: yes for udp, no otherwise)")
    f = p.add_argument_group("fault injection")
    f.add_argument("--drift-ppm", type=float, default=0.0, help="device clock error, ppm")
    f.add_argument("--clock-offset-us", type=float, default=None,
                   help="device time at the first sample (default 150000: just booted)")
    f.add_argument("--jitter-us", type=float, default=0.0, help="device timestamp jitter (std, us)")
    f.add_argument("--send-jitter-ms", type=float, default=0.0,
                   help="frames leave up to this late (uniform), like radio/USB bunching")
    f.add_argument("--loss", type=_fraction, default=0.0, help="fraction of frames dropped")
    f.add_argument("--corrupt", type=_fraction, default=0.0, help="fraction of bytes flipped")
    f.add_argument("--disconnect-every", type=float, default=None, metavar="SECONDS",
                   help="drop the link every SECONDS of streaming (serial: the pty closes and "
                        "comes back at the same path; udp: silence; ble: the connection drops)")
    f.add_argument("--disconnect-for", type=float, default=1.0, metavar="SECONDS",
                   help="how long serial/udp stays down (default 1)")
    f.add_argument("--reboot-at", type=float, default=None, metavar="SECONDS",
                   help="reboot after SECONDS of streaming (new boot_id, seq and clock restart)")
    p.add_argument("--publish-truth", action="store_true",
                   help="publish the twin's ground-truth blendshapes as an LSL 'Blendshapes' "
                        "stream (desc/source twin)")
    p.add_argument("--truth-name", default=None, help="name of that LSL stream")


def run(args: argparse.Namespace) -> int:
    """Run the emulator until ``--seconds`` are streamed or Ctrl-C / SIGTERM."""
    import asyncio
    import signal
    import sys

    from imusic.firmware_bridge.emulator import Emulator, EmulatorConfig, ready_line

    cfg = EmulatorConfig(
        transport=args.transport, rig=args.rig, motion=args.motion, rate_hz=args.rate,
        seconds=args.seconds, neutral_s=args.neutral_s,
        wall_seconds=None if args.seconds is None else args.seconds + WALL_GRACE_S,
        seed=args.seed, udp_target=args.udp, report=args.report,
        gyro=not args.no_gyro, mag=not args.no_mag,
        instants_per_frame=args.instants_per_frame, drift_ppm=args.drift_ppm,
        clock_offset_us=args.clock_offset_us,
        jitter_us=args.jitter_us, send_jitter_ms=args.send_jitter_ms, loss=args.loss,
        corrupt=args.corrupt, disconnect_every=args.disconnect_every,
        disconnect_for=args.disconnect_for, reboot_at=args.reboot_at,
        publish_truth=args.publish_truth, truth_name=args.truth_name,
        autostart=args.autostart, keep_truth=False)
    try:
        emu = Emulator(cfg)
    except ValueError as err:
        print(f"imusic emulate: {err}", file=sys.stderr)
        return 2

    async def main() -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: loop.create_task(emu.stop()))
        try:
            await emu.start()
        except (OSError, ValueError, KeyError) as err:
            print(f"imusic emulate: {err}", file=sys.stderr)
            await emu.close()
            return 2
        info = emu.link_info
        where = {"serial": lambda: f"serial port {info['path']} (pty {info['pty']})",
                 "udp": lambda: f"UDP {info['local']} -> {info['target']}",
                 "ble": lambda: (f"BLE peripheral {info['address']} '{info['name']}'; hosts: "
                                 f"IMUSIC_BLE_HCI={info['hci']}")}[cfg.transport]()
        from imusic.firmware_bridge.outlet import quantities

        sends = "+".join(quantities(emu.info.has_gyro, emu.info.has_mag, emu.info.has_quat))
        print(f"{emu.name}: rig {cfg.rig}, {emu.info.sensor_count} sensors at {emu.rate_hz} Hz "
              f"sending {sends}" + (" (on-device fusion)" if emu.info.has_quat else "")
              + f", device id {emu.device_id:08x}, motion {cfg.motion}; {where}", flush=True)
        print(ready_line(emu), flush=True)
        if not emu.autostart:
            print("waiting for START from a host (e.g. imusic stream)...", flush=True)
        await emu.run()
        s = emu.stats
        print(f"done: {s.frames} frames / {s.instants} instants, {s.frames_lost} dropped "
              f"(--loss), {s.frames_corrupted} corrupted, {s.tx_dropped} not sent (link down), "
              f"{s.disconnects} disconnects, {s.reboots} reboots", flush=True)
        return 0

    return asyncio.run(main())
