"""``imusic export``: a session's blendshapes as Live Link Face CSV, FACS AU CSV, plain CSV or
glTF 2.0 (.glb)."""

from __future__ import annotations

import argparse

HELP = ("export a session's blendshapes: Live Link Face CSV, FACS action units (OpenFace), CSV, "
        "glTF 2.0 (.glb)")
EXAMPLE = "imusic export session.h5 --format livelink-csv -o take.csv"
FORMATS = ("livelink-csv", "au-csv", "csv", "gltf")  # capture.export.FORMATS (not imported: fast --help)
N_IDENTITIES = 20  # hardware.face.N_IDENTITIES (not imported: fast --help)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``imusic export``."""
    parser.add_argument("session", metavar="SESSION.h5", help="session file to export")
    parser.add_argument("--format", required=True, choices=FORMATS,
                        help="livelink-csv: as the Live Link Face app writes takes; au-csv: FACS "
                             "action units in OpenFace 2.0 columns (0..5); csv: time + named "
                             "columns (IMU channels too, from an aligned session); gltf: "
                             "the ICT head with the 52 blendshapes as morph targets and the take "
                             "as an animation (Blender, Unreal, three.js)")
    parser.add_argument("-o", "--output", default=None, metavar="OUT",
                        help="output file (default: SESSION.livelink.csv / .au.csv / .csv / .glb)")
    parser.add_argument("--identity", type=int, default=None, choices=range(N_IDENTITIES),
                        metavar="0..19",
                        help="gltf: which of the 20 ICT FaceKit identities (default: the generic "
                             "neutral head)")
    parser.add_argument("--stream", default=None, metavar="KEY",
                        help="export this recorded Blendshapes stream instead of the aligned "
                             "group (keys: 'imusic info SESSION.h5')")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output")


def run(args: argparse.Namespace) -> int:
    """Export; exit 2 with a message naming the file on bad input."""
    import sys

    from imusic.capture.export import ExportError, export_session

    try:
        out, series = export_session(args.session, args.format, args.output,
                                     stream=args.stream, overwrite=args.force,
                                     identity=args.identity)
    except (ExportError, KeyError) as err:
        print(f"imusic export: {err.args[0] if err.args else err}", file=sys.stderr)
        return 2
    lost = int((~series.face_found).sum())
    print(f"wrote {out}: {series.n_frames} frames from {series.origin} "
          f"({lost} without a tracked face)", file=sys.stderr)
    return 0
