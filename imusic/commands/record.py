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
    import signal
    import sys
    import threading
    import time

    from capture.recorder import DiskFull, RecordLimits, Recorder
    from capture.session import SessionError

    if args.rcs is not None:
        return _run_rcs(args)
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

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    tty = sys.stderr.isatty()
    rc = 0
    rec.start()
    try:
        if required:
            deadline = time.monotonic() + args.wait
            missing = required
            while missing and not stop.is_set() and time.monotonic() < deadline:
                missing = rec.wait_for_types(required, timeout=0.2)
            if missing and not stop.is_set():
                print(f"imusic record: no {', '.join(missing)} stream found within "
                      f"{args.wait:.0f} s; start the source (e.g. 'imusic emulate' for IMU, "
                      "'imusic arkit' for Blendshapes) or check --streams-by. The file "
                      f"{args.output} keeps what was recorded.", file=sys.stderr)
                rc = 3
                stop.set()
        t_end = time.monotonic() + args.seconds if args.seconds is not None else float("inf")
        print(f"recording to {args.output} (Ctrl-C to stop)", file=sys.stderr)
        last = 0.0
        while not stop.is_set() and time.monotonic() < t_end and not rec.writer_failed:
            stop.wait(min(limits.status_poll_s, max(0.0, t_end - time.monotonic())))
            if not args.quiet and time.monotonic() - last >= 1.0:
                last = time.monotonic()
                line = rec.status_line()
                print(f"\r{line}\033[K" if tty else line, end="" if tty else "\n",
                      file=sys.stderr, flush=True)
    finally:
        rec.stop()
        for s, h in old.items():
            signal.signal(s, h)
    if rec.writer_failed:
        # One line: the file, what failed, what it keeps.
        print(("\n" if tty and not args.quiet else "") + f"imusic record: {rec.failure}",
              file=sys.stderr)
        return 1
    if not args.quiet:
        print(("\n" if tty else "") + rec.status_line(), file=sys.stderr)
    print(f"saved {args.output}", file=sys.stderr)
    return rc or (1 if rec.errors and not rec.status else 0)


def _run_rcs(args: argparse.Namespace) -> int:
    """Serve LabRecorder's remote control commands until Ctrl-C / SIGTERM."""
    import signal
    import sys
    import threading

    from capture.rcs import RcsError, RcsServer
    from capture.recorder import Recorder
    from capture.session import SessionError

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
    done = threading.Event()
    old = {s: signal.signal(s, lambda *_: done.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    print(f"imusic record: remote control on {args.rcs_host}:{server.port} (LabRecorder RCS: "
          "select all, filename {...}, start, stop, update); Ctrl-C to quit",
          file=sys.stderr, flush=True)
    try:
        while not done.wait(0.2):
            pass
    finally:
        server.close()
        stop()
        for s, h in old.items():
            signal.signal(s, h)
    return 0
