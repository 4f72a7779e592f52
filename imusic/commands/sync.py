"""``imusic sync``: clock offsets, dejitter, tap, lag, calibration -> the aligned group."""

from __future__ import annotations

import argparse

HELP = "synchronise a recorded session: calibrate, estimate the IMU/ARKit lag, write 'aligned'"
EXAMPLE = "imusic sync session.h5 --max-lag 1.0"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``imusic sync``."""
    parser.add_argument("session", metavar="SESSION.h5", help="recorded session (modified in place)")
    parser.add_argument("--imu", default=None, metavar="KEY", help="IMU stream key (default: first)")
    parser.add_argument("--blendshapes", default=None, metavar="KEY",
                        help="Blendshapes stream key (default: first ground-truth stream)")
    parser.add_argument("--rate", type=float, default=None,
                        help="aligned rate, Hz (default: SyncConfig.rate_hz, 60)")
    parser.add_argument("--max-lag", type=float, default=None, metavar="S",
                        help="largest IMU/ARKit lag searched, seconds (default: "
                             "SyncConfig.max_lag, 1.0)")
    parser.add_argument("--lag", type=float, default=None, metavar="S",
                        help="use this lag instead of estimating it")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        dest="thresholds",
                        help="any sync threshold (capture/sync_config.py SyncConfig, e.g. "
                             "tap_min_spike=15 min_overlap_s=0.5 gyro_std=0.03); repeatable")
    parser.add_argument("--dry-run", action="store_true", help="report only, write nothing")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def _threshold(item: str) -> tuple[str, int | float]:
    """``NAME=VALUE`` of ``--set`` (an int when it reads as one); ValueError otherwise."""
    name, sep, value = item.partition("=")
    try:
        return name.strip(), int(value) if value.strip().lstrip("+-").isdigit() else float(value)
    except ValueError:
        pass
    raise ValueError(f"--set {item!r}: expected NAME=NUMBER" if sep else
                     f"--set {item!r}: expected NAME=NUMBER (no '=')")


def run(args: argparse.Namespace) -> int:
    """Synchronise and print what was found."""
    import sys

    from imusic.capture.session import SessionError
    from imusic.capture.sync import SyncConfig, describe, sync_session
    from imusic.commands._json import dumps

    try:
        given = {k: v for k, v in (("rate_hz", args.rate), ("max_lag", args.max_lag))
                 if v is not None}
        config = SyncConfig().with_(**{**given, **dict(_threshold(i) for i in args.thresholds)})
    except (TypeError, ValueError) as err:
        print(f"imusic sync: {err}", file=sys.stderr)
        return 2
    try:
        res = sync_session(args.session, imu_key=args.imu, bs_key=args.blendshapes,
                           lag=args.lag, write=not args.dry_run, config=config)
    except (SessionError, KeyError, ValueError) as err:
        print(f"imusic sync: {err}", file=sys.stderr)
        return 2
    d = describe(res)
    if args.json:
        print(dumps(d))
        return 0
    print(f"{args.session}: {d['imu_stream']} + {d['blendshapes_stream']} -> aligned "
          f"{d['frames']} frames ({d['seconds']:.1f} s at {config.rate_hz:g} Hz)")
    print(f"  lag {d['lag_s'] * 1e3:+.1f} ms (ARKit behind IMU; confidence "
          f"{d['lag_confidence']:.2f})")
    tap = ("not found" if d["tap_imu_s"] != d["tap_imu_s"]
           else f"IMU at {d['tap_imu_s']:.3f} s" + (
               f", blendshape twitch at {d['tap_blendshapes_s']:.3f} s"
               if d["tap_blendshapes_s"] == d["tap_blendshapes_s"] else ", no blendshape twitch"))
    print(f"  start-of-take tap: {tap}")
    print(f"  calibration: still {d['still_fraction']:.0%} of the time, max gyro bias "
          f"{d['gyro_bias_rad_s_max']:.4f} rad/s; reference {d['reference']}")
    print(f"  neutral pose (the model's): {d['neutral_line']}")
    print(f"  valid: IMU {d['valid_imu']:.0%}, ARKit {d['valid_arkit']:.0%}"
          + ("  (dry run: nothing written)" if args.dry_run else ""))
    return 0
