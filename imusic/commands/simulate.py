"""``imusic simulate``: paired IMU / blendshape training sessions made by the digital twin."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imusic.model.simulate import DeviceOutput

HELP = "make paired twin sessions (synthetic IMU from real Live Link Face takes + procedural motion)"
EXAMPLE = "imusic simulate -o data/twin --subjects 20 --minutes 2 --procedural --seed 0"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``imusic simulate``."""
    parser.add_argument("-o", "--out", required=True, metavar="DIR",
                        help="folder for the session files (<subject>_<take>.h5)")
    parser.add_argument("--subjects", type=int, default=20,
                        help="virtual subjects; subject k wears head shape k mod 20 (default 20)")
    parser.add_argument("--minutes", type=float, default=2.0, metavar="M",
                        help="minutes of motion per subject, shared equally between the "
                             "sources (default 2)")
    parser.add_argument("--motion", nargs="*", default=None, metavar="TAKE.csv",
                        help="real Live Link Face CSV takes to drive the face (default: the "
                             "takes shipped in hardware/data/takes; 'none' or no file: "
                             "procedural motion only)")
    parser.add_argument("--procedural", action="store_true",
                        help="add procedural motion (always used when there are no takes)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the session files already in --out (refused otherwise)")
    parser.add_argument("--rig", default="imusic11", help="rig name or JSON file (default imusic11)")
    parser.add_argument("--rate", type=float, default=100.0, metavar="HZ",
                        help="device sample rate of the simulated IMUs (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="data seed (default 0)")
    parser.add_argument("--layout", choices=("session", "imusic-release"), default="session",
                        help="session: imusic session files (default); imusic-release: take "
                             "folders as the IMUSIC authors release them (DIR/data/"
                             "participant_N_testcase_M: per-sensor quaternion + acceleration "
                             "CSVs from an on-device AHRS, and the ARKit CSV), for "
                             "'imusic import'")
    parser.add_argument("--report", choices=("raw", "orientation"), default="raw",
                        help="what the simulated device sends, as in 'imusic emulate': raw "
                             "acc, gyro, mag (default), or orientation: acceleration + the "
                             "quaternion of the emulator's on-device fusion")
    parser.add_argument("--no-gyro", action="store_true",
                        help="with --report orientation: sessions without the gyroscope block")
    parser.add_argument("--no-mag", action="store_true",
                        help="a device without magnetometer (6-axis fusion in orientation mode)")
    parser.add_argument("--takes", type=int, default=2,
                        help="imusic-release: procedural takes per subject (default 2)")


def run(args: argparse.Namespace) -> int:
    """Simulate every (subject, source) session and write it."""
    import sys
    import time
    from pathlib import Path

    from imusic.capture.livelink_csv import LiveLinkCSVError, shipped_takes
    from imusic.model.simulate import DeviceOutput, existing_sessions

    if args.motion is None:
        takes = shipped_takes()
    else:
        takes = [Path(p) for p in args.motion if p != "none"]
    missing = [str(p) for p in takes if not p.is_file()]
    if missing:
        print(f"imusic simulate: no such take file(s): {', '.join(missing)} "
              "(give Live Link Face CSV files)", file=sys.stderr)
        return 2
    if args.subjects < 1 or args.minutes <= 0:
        print("imusic simulate: --subjects and --minutes must be positive", file=sys.stderr)
        return 2
    procedural = args.procedural or not takes
    t0 = time.perf_counter()
    if args.layout == "imusic-release":
        if args.report != "raw" or args.no_gyro or args.no_mag:
            print("imusic simulate: --layout imusic-release always writes orientation + "
                  "acceleration (no --report, --no-gyro, --no-mag)", file=sys.stderr)
            return 2
        return _release(args, t0)
    try:
        output = DeviceOutput(args.report, gyro=not args.no_gyro, mag=not args.no_mag)
    except ValueError as err:
        print(f"imusic simulate: {err}", file=sys.stderr)
        return 2
    try:
        paths = _simulate(args, takes, procedural, output)
    except (LiveLinkCSVError, NotADirectoryError, FileExistsError) as err:
        print(f"imusic simulate: {err}", file=sys.stderr)
        return 1
    print(f"wrote {len(paths)} twin sessions to {args.out} in {time.perf_counter() - t0:.0f} s "
          f"(rig {args.rig}, seed {args.seed}; device sends "
          f"{'+'.join(imu_quantities(output))}; labelled source=twin; motion: "
          f"{', '.join(p.name for p in takes) or 'none'}{' + procedural' if procedural else ''})")
    left = sorted(set(existing_sessions(args.out)) - set(paths))
    if left:
        print(f"note: {len(left)} other session file(s) in {args.out} were left as they were "
              f"(e.g. {left[0].name}); training reads every file in the folder")
    return 0


def imu_quantities(output: DeviceOutput) -> tuple[str, ...]:
    """The quantities the sessions' IMU stream carries per site."""
    from imusic.firmware_bridge.outlet import quantities

    return quantities(output.gyro, output.mag, output.quat)


def _simulate(args: argparse.Namespace, takes: list, procedural: bool,
              output: DeviceOutput) -> list:
    """simulate_dataset under a progress bar."""
    import shlex
    import sys

    from rich.progress import Progress

    from imusic.model.simulate import simulate_dataset

    bar = Progress(transient=False)
    task = bar.add_task("simulating", total=None)

    def report(i: int, n: int, name: str) -> None:
        if not bar.live.is_started:
            bar.start()   # only once the checks have passed and work begins
        bar.update(task, total=n, completed=i, description=f"simulating {name}")

    command = "imusic simulate " + " ".join(shlex.quote(a) for a in sys.argv[2:]) \
        if len(sys.argv) > 1 and sys.argv[1] == "simulate" else ""
    try:
        return simulate_dataset(args.out, args.subjects, args.minutes, takes, procedural,
                                args.rig, args.seed, args.rate, report, command,
                                overwrite=args.overwrite, output=output)
    finally:
        if bar.live.is_started:
            bar.stop()


def _release(args: argparse.Namespace, t0: float) -> int:
    """``--layout imusic-release``: twin-made take folders."""
    import sys
    import time

    from imusic.model.release_twin import make_release

    if args.motion or args.rig != "imusic11" or args.takes < 1:
        print("imusic simulate: --layout imusic-release simulates procedural motion on the "
              "imusic11 twin (no --motion, no --rig) with --takes >= 1", file=sys.stderr)
        return 2
    seconds = args.minutes * 60.0 / args.takes
    try:
        folders = make_release(args.out, args.subjects, args.takes, seconds, args.seed,
                               args.rate)
    except (FileExistsError, ValueError) as err:
        print(f"imusic simulate: {err}", file=sys.stderr)
        return 2
    print(f"wrote {len(folders)} twin take folders to {args.out}/data in "
          f"{time.perf_counter() - t0:.0f} s ({args.subjects} subjects x {args.takes} takes of "
          f"{seconds:.0f} s; orientation from an AHRS on the twin's raw signals; "
          "import them with 'imusic import')")
    return 0
