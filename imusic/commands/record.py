"""``imusic record``: record LSL streams (IMU, Blendshapes, Markers) into one HDF5 session."""

from __future__ import annotations

import argparse

HELP = "record every IMU / Blendshapes / Markers LSL stream into one HDF5 session file"
EXAMPLE = "imusic record -o session.h5 --require IMU,Blendshapes --seconds 600 --subject p01"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``imusic record``."""
    parser.add_argument("-o", "--output", default=None, metavar="SESSION.h5",
                        help="new session file (an existing file is never overwritten); "
                             "required unless --rcs")
    parser.add_argument("--rcs", type=int, nargs="?", const=22345, default=None, metavar="PORT",
                        help="LabRecorder's remote control socket: lab scripts send 'filename "
                             "{root:..} {participant:..} {task:..} {run:..}', 'start', 'stop' "
                             "(default port 22345; see capture/rcs.py)")
    parser.add_argument("--rcs-host", default="127.0.0.1", metavar="HOST",
                        help="address the --rcs socket binds to (default 127.0.0.1)")
    parser.add_argument("--require", default="", metavar="TYPES",
                        help="comma-separated stream types that must be present before the "
                             "recording counts as started, e.g. IMU,Blendshapes")
    parser.add_argument("--wait", type=float, default=30.0, metavar="S",
                        help="seconds to wait for the --require streams (default 30)")
    parser.add_argument("--seconds", type=float, default=None, metavar="N",
                        help="stop after N seconds (default: until Ctrl-C or SIGTERM)")
    parser.add_argument("--subject", default="", help="participant id stored in the file")
    parser.add_argument("--types", default="IMU,Blendshapes,Markers",
                        help="stream types to record (default IMU,Blendshapes,Markers)")
    parser.add_argument("--streams-by", nargs="+", default=None, metavar="NAME",
                        help="record only streams with these names or source ids")
    parser.add_argument("--min-free", type=float, default=None, metavar="MIB",
                        help="stop cleanly when the disk has less than MIB MiB free (default "
                             "1; 0 = write until a write fails)")
    parser.add_argument("--quiet", action="store_true", help="no live status line")


def run(args: argparse.Namespace) -> int:
    """Record until --seconds, Ctrl-C or SIGTERM; always flush and close the file."""
    if args.rcs is None:
        return _record(args)   # no event loop: asyncio and ssl are 6 MB of its memory
    import asyncio

    return asyncio.run(_serve_rcs(args))


def _record(args: argparse.Namespace) -> int:
    import sys

    from imusic.capture.recorder import DiskFull, RecordLimits, Recorder
    from imusic.capture.session import SessionError
    from imusic.runner import BlockingRunner

    if not args.output:
        print("imusic record: give -o SESSION.h5 (or --rcs to take file names from a lab "
              "script)", file=sys.stderr)
        return 2
    types = [t.strip() for t in args.types.split(",") if t.strip()]
    required = [t.strip() for t in args.require.split(",") if t.strip()]
    limits = RecordLimits()
    if args.min_free is not None:
        limits.min_free_bytes = int(max(0.0, args.min_free) * (1 << 20))
    try:
        rec = Recorder(args.output, subject=args.subject, types=types, names=args.streams_by,
                       limits=limits,
                       on_error=lambda m: print(f"\nimusic record: {m}", file=sys.stderr),
                       on_warning=lambda m: print(f"\nimusic record: warning: {m}",
                                                  file=sys.stderr))
    except SessionError as err:
        print(f"imusic record: {err}", file=sys.stderr)
        return 2
    except DiskFull as err:
        print(f"imusic record: {err}", file=sys.stderr)
        return 1
    recording = False   # the status line shows once the --require streams are there
    runner = BlockingRunner(args.seconds, quiet=args.quiet, count_from_start=False,
                            status=lambda: rec.status_line() if recording else None,
                            poll_s=limits.status_poll_s)

    def work() -> int:
        nonlocal recording
        if required:
            missing = _wait_for(rec, required, args.wait, runner)
            if missing and not runner.stop.is_set():
                runner.say(f"imusic record: no {', '.join(missing)} stream found within "
                           f"{args.wait:.0f} s; start the source (e.g. 'imusic emulate' for "
                           "IMU, 'imusic arkit' for Blendshapes) or check --streams-by. The "
                           f"file {args.output} keeps what was recorded.")
                return 3
        runner.begin()   # --seconds counts from here
        runner.say(f"recording to {args.output} (Ctrl-C to stop)")
        recording = True
        while not rec.writer_failed and not runner.wait(limits.status_poll_s):
            pass
        return 0

    rec.start()
    try:
        rc = runner.run(work)
    finally:
        rec.stop()
    if rec.writer_failed:
        # One line: the file, what failed, what it keeps.
        print(f"imusic record: {rec.failure}", file=sys.stderr)
        return 1
    if not args.quiet:
        print(rec.status_line(), file=sys.stderr)
    print(f"saved {args.output}", file=sys.stderr)
    return rc or (1 if rec.errors and not rec.status else 0)


def _wait_for(rec, required: list[str], wait_s: float, runner) -> list[str]:
    """The ``--require`` types still missing after ``wait_s`` (or when the run is stopped)."""
    import time

    deadline = time.monotonic() + wait_s
    missing = required
    while missing and not runner.wait(0.0) and time.monotonic() < deadline:
        missing = rec.wait_for_types(required, timeout=0.2)
    return missing


async def _serve_rcs(args: argparse.Namespace) -> int:
    """Serve LabRecorder's remote control commands until Ctrl-C / SIGTERM."""
    import sys

    from imusic.capture.rcs import RcsError, RcsServer
    from imusic.capture.recorder import Recorder
    from imusic.capture.session import SessionError
    from imusic.runner import Runner

    types = [t.strip() for t in args.types.split(",") if t.strip()]
    current: dict = {}
    say = lambda text: print(f"imusic record: {text}", file=sys.stderr, flush=True)  # noqa: E731

    def start(path) -> None:
        if current.get("rec") is not None:
            raise RcsError(f"already recording to {current['rec'].path}; send stop first")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            rec = Recorder(path, subject=args.subject, types=types, names=args.streams_by,
                           on_error=lambda m: say(m))
        except SessionError as err:
            raise RcsError(str(err)) from None
        current["rec"] = rec.start()
        say(f"recording to {path}")

    def stop() -> None:
        rec = current.pop("rec", None)
        if rec is not None:
            rec.stop()
            say(f"saved {rec.path}: {rec.status_line()}")

    try:
        server = RcsServer(start, stop, host=args.rcs_host, port=args.rcs, log=say).serve()
    except OSError as err:
        print(f"imusic record: cannot listen on {args.rcs_host}:{args.rcs} ({err}); is "
              "LabRecorder or another imusic record --rcs running? Give another port.",
              file=sys.stderr)
        return 2
    print(f"imusic record: remote control on {args.rcs_host}:{server.port} (LabRecorder RCS: "
          "select all, filename {...}, start, stop, update); Ctrl-C to quit",
          file=sys.stderr, flush=True)
    runner = Runner(args.seconds)
    try:
        await runner.run(runner.stop.wait())
    finally:
        server.close()
        stop()
    return 0
