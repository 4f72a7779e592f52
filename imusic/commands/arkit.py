"""``imusic arkit``: ARKit ground truth onto LSL (Live Link Face over UDP, or a recorded take)."""

from __future__ import annotations

import argparse

HELP = "publish ARKit blendshapes on LSL: receive Live Link Face (UDP) or replay a CSV take"
EXAMPLE = "imusic arkit --listen 11111   |   imusic arkit --replay take.csv --udp 127.0.0.1:11111 --loop"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``imusic arkit``."""
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--listen", type=int, metavar="PORT", nargs="?", const=11111,
                      help="receive the Live Link Face app on this UDP port (app default 11111; "
                           "0 picks a free port and prints it)")
    mode.add_argument("--replay", metavar="TAKE.csv",
                      help="play a Live Link Face CSV take as a live stream")
    parser.add_argument("--name", default=None,
                        help="LSL stream name (default 'ARKit', or 'ARKit replay')")
    parser.add_argument("--host", default="0.0.0.0",
                        help="--listen: address to bind (default all interfaces)")
    parser.add_argument("--subject", default=None,
                        help="--listen: only accept this Live Link subject name")
    parser.add_argument("--latency-ms", type=float, default=None, metavar="MS",
                        help="--listen: assumed capture-to-arrival latency subtracted from the "
                             "timestamps (default 50; see capture/ARKIT.md)")
    parser.add_argument("--udp", metavar="HOST:PORT", default=None,
                        help="--replay: send Live Link Face packets here instead of LSL "
                             "(a stand-in for the phone)")
    parser.add_argument("--lsl", action="store_true",
                        help="--replay with --udp: publish on LSL as well")
    parser.add_argument("--loop", action="store_true", help="--replay: repeat the take")
    parser.add_argument("--speed", type=float, default=1.0, metavar="X",
                        help="--replay: play X times faster than real time (default 1)")
    parser.add_argument("--seconds", type=float, default=None, metavar="N",
                        help="stop after N seconds (default: until Ctrl-C / SIGTERM, or the end "
                             "of a replay without --loop)")
    parser.add_argument("--quiet", action="store_true", help="no live status line")


def run(args: argparse.Namespace) -> int:
    """Run the receiver or the player until done, --seconds, Ctrl-C or SIGTERM."""
    import asyncio
    import sys

    try:
        return asyncio.run(_main(args))
    except _UsageError as err:
        print(f"imusic arkit: {err}", file=sys.stderr)
        return 2


class _UsageError(Exception):
    pass


async def _main(args: argparse.Namespace) -> int:
    if args.listen is not None:
        return await _listen(args)
    return await _replay(args)


async def _listen(args: argparse.Namespace) -> int:
    import asyncio
    import contextlib
    import sys

    from imusic.capture.arkit_bridge import (
        DEFAULT_LATENCY_S,
        NO_PACKETS_WARNING_S,
        LiveLinkReceiver,
        no_packets_hint,
    )
    from imusic.runner import Runner

    latency = DEFAULT_LATENCY_S if args.latency_ms is None else args.latency_ms / 1000.0
    rx = LiveLinkReceiver(name=args.name or "ARKit", host=args.host, port=args.listen,
                          subject=args.subject, latency_s=latency)
    try:
        port = await rx.start()
    except OSError as err:
        print(f"imusic arkit: {err}", file=sys.stderr)
        return 2
    print(f"listening for Live Link Face (the app's Live Link (ARKit) mode) on udp port {port}; "
          f"LSL stream '{rx.name}' "
          f"(type Blendshapes) appears with the first packet. Ctrl-C to stop.",
          file=sys.stderr, flush=True)
    runner = Runner(args.seconds, status=rx.status_line, quiet=args.quiet)

    async def watch(stop: asyncio.Event) -> None:
        """Say once when no packet came in the first seconds (the app's other mode)."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), NO_PACKETS_WARNING_S)
        if not stop.is_set() and rx.stats.datagrams == 0:
            runner.say(f"imusic arkit: {no_packets_hint(port)}")
        await stop.wait()

    try:
        await runner.run(watch(runner.stop))
    finally:
        rx.close()
    runner.say(rx.status_line())
    if rx.stats.datagrams == 0:
        print(f"imusic arkit: {no_packets_hint(port)}", file=sys.stderr)
    if rx.stats.last_error:
        print(f"last dropped datagram: {rx.stats.last_error}", file=sys.stderr)
    return 0


async def _replay(args: argparse.Namespace) -> int:
    import sys

    from imusic.capture.arkit_bridge import ReplayStats, parse_host_port, replay_take
    from imusic.firmware_bridge.streams import blendshapes_info
    from imusic.capture.livelink_csv import LiveLinkCSVError, read_take
    from imusic.runner import Runner

    try:
        take = read_take(args.replay)
    except FileNotFoundError:
        raise _UsageError(f"{args.replay}: no such take (a Live Link Face CSV file)") from None
    except LiveLinkCSVError as err:
        raise _UsageError(str(err)) from None
    if not args.speed > 0:
        raise _UsageError(f"--speed must be > 0, got {args.speed}")
    udp = None
    if args.udp:
        try:
            udp = parse_host_port(args.udp)
        except ValueError as err:
            raise _UsageError(f"--udp: {err}") from None
    outlet = None
    name = args.name or "ARKit replay"
    if udp is None or args.lsl:
        import pylsl

        info = blendshapes_info(name, "arkit", f"replay:{take.path.name}:{name}",
                                rate_hz=take.fps * args.speed if take.fps == take.fps else 60.0,
                                extra={"take": str(take.path), "speed": f"{args.speed:g}"})
        outlet = pylsl.StreamOutlet(info)
    stats = ReplayStats()
    where = " + ".join(x for x in (f"LSL '{name}'" if outlet else "",
                                    f"udp {udp[0]}:{udp[1]}" if udp else "") if x)
    print(f"replaying {take.path} ({take.n_frames} frames, {take.duration:.1f} s at "
          f"{take.fps:g} fps) x{args.speed:g} to {where}{' in a loop' if args.loop else ''}",
          file=sys.stderr, flush=True)

    def line() -> str:
        return (f"replay {take.path.name}: {stats.frames} frames sent, {stats.no_face} face-lost, "
                f"{stats.loops} loops, at {stats.position_s:.1f}/{take.duration:.1f} s")

    runner = Runner(args.seconds, status=line, quiet=args.quiet)
    await runner.run(replay_take(take, outlet=outlet, udp=udp, speed=args.speed,
                                 loop=args.loop, stop=runner.stop, stats=stats))
    runner.say(line())
    return 0
