"""``imusic view``: the Open3D face viewer (live from LSL, replay, side by side, snapshots)."""

from __future__ import annotations

import argparse
import sys

HELP = "Show blendshapes on a 3D face: live from LSL, replay a session, compare, snapshot."
EXAMPLE = "imusic view session.h5 --predictions pred.npy --camera three-quarter"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``imusic view``."""
    parser.add_argument("source", nargs="?",
                        help="session .h5 (aligned group or recorded Blendshapes stream), "
                             "predictions .npy/.h5, or Live Link Face .csv to replay")
    parser.add_argument("--lsl", action="append", nargs="?", const="", metavar="NAME",
                        help="show a live LSL Blendshapes stream (by name or source_id; "
                             "empty: the first found); give twice for side by side")
    parser.add_argument("--predictions", "--compare", dest="compare", metavar="FILE",
                        help="second source shown beside SOURCE, coloured by per-vertex error")
    parser.add_argument("--identity", type=int, default=None, metavar="0..19",
                        help="one of the 20 ICT head shapes (default: the generic head)")
    parser.add_argument("--camera", default="front",
                        choices=("front", "three-quarter", "profile"))
    parser.add_argument("--full-head", action="store_true",
                        help="draw the whole head (mouth, teeth, tongue); slower")
    parser.add_argument("--rig", default="auto",
                        help="rig whose sensors are drawn (name or JSON path; 'none' to hide; "
                             "default: the session's rig or the default rig)")
    parser.add_argument("--full-detail", action="store_true",
                        help="draw every triangle in the window (default: a decimated mesh of "
                             "about 9k triangles per face, to keep up; snapshots are always "
                             "full detail)")
    parser.add_argument("--no-markers", action="store_true", help="start with sensors hidden")
    parser.add_argument("--error-scale", type=float, default=5.0, metavar="MM",
                        help="per-vertex error (mm) at the top of the colour map (default 5)")
    parser.add_argument("--speed", type=float, default=1.0, help="replay speed factor")
    parser.add_argument("--no-loop", action="store_true", help="stop at the end of a replay")
    parser.add_argument("--rate", type=float, default=60.0,
                        help="frame rate of .npy inputs (Hz, default 60)")
    parser.add_argument("--timeout", type=float, default=5.0,
                        help="seconds to wait for LSL streams (default 5)")
    parser.add_argument("--duration", type=float, default=None, metavar="S",
                        help="close the window after S seconds")
    parser.add_argument("--snapshot", metavar="OUT.png",
                        help="render one frame to a PNG and exit (starts Xvfb if no DISPLAY)")
    parser.add_argument("--frame", type=int, default=0, metavar="N",
                        help="frame of SOURCE for --snapshot (default 0)")
    parser.add_argument("--blendshapes", metavar="NAME=V,...",
                        help="pose to show without a source, e.g. 'jawOpen=0.7' "
                             "(with a source: added on top of its frame)")
    parser.add_argument("--size", default=None, metavar="WxH",
                        help="window size in pixels (default 640x720, 1200x720 side by side)")


def _size(text: str | None) -> dict:
    if not text:
        return {}
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"imusic view: --size {text!r} must look like 800x600") from None
    return {"width": w, "height": h}


def _markers(args: argparse.Namespace, rig_hint: str | None) -> list:
    """Marker sites for --rig (auto: the session's rig, else the first shipped rig)."""
    from imusic.hardware.face import FaceModel
    from imusic.viewer.markers import sites_from_rig

    if args.rig == "none":
        return []
    try:
        from imusic.hardware.rig import RigError, available_rigs, load_rig
    except ImportError:
        return []
    name = args.rig
    if name == "auto":
        shipped = available_rigs()
        name = rig_hint if rig_hint in shipped else (shipped[0] if shipped else None)
        if name is None:
            return []
    try:
        rig = load_rig(name)
    except (RigError, FileNotFoundError, KeyError, ValueError) as err:
        if args.rig == "auto":
            print(f"note: sensors not drawn ({err})", file=sys.stderr)
            return []
        raise SystemExit(f"imusic view: {err}") from None
    return sites_from_rig(FaceModel.load(), rig, args.identity)


def run(args: argparse.Namespace) -> int:
    """Open the viewer (or write a snapshot)."""
    import numpy as np

    from imusic.viewer.app import LIVE_KEYS, REPLAY_KEYS, keys_help, run_live, run_replay
    from imusic.viewer.display import DisplayError, ensure_display
    from imusic.viewer.face_view import WindowError
    from imusic.viewer.live import LslSource, StreamNotFound, resolve_blendshapes
    from imusic.viewer.player import Player
    from imusic.viewer.snapshot import parse_blendshapes, snapshot
    from imusic.viewer.sources import SourceError

    if args.identity is not None and not 0 <= args.identity <= 19:
        print("imusic view: --identity must be 0..19", file=sys.stderr)
        return 2
    lsl = args.lsl or []
    if lsl and args.source:
        print("imusic view: give either SOURCE (replay) or --lsl (live), not both",
              file=sys.stderr)
        return 2
    if len(lsl) > 2:
        print("imusic view: at most two --lsl streams (side by side)", file=sys.stderr)
        return 2
    try:
        extra = parse_blendshapes(args.blendshapes) if args.blendshapes else None
    except ValueError as err:
        print(f"imusic view: --blendshapes: {err}", file=sys.stderr)
        return 2

    try:
        track = _track(args.source, args.rate) if args.source else None
        second = _track(args.compare, args.rate) if args.compare else None
        if second is not None and track is None:
            print("imusic view: --predictions needs a SOURCE to compare with", file=sys.stderr)
            return 2
        rig_hint = None
        if args.source and str(args.source).endswith((".h5", ".hdf5")):
            rig_hint = _session_rig(args.source)
        options = dict(identity=args.identity, camera=args.camera, full_head=args.full_head,
                       markers=_markers(args, rig_hint), show_markers=not args.no_markers,
                       error_scale_mm=args.error_scale, **_size(args.size))
        n_faces = 2 if (second is not None or len(lsl) == 2) else 1
        if n_faces == 2:
            print(f"right face coloured by per-vertex error: {args.error_scale:g} mm and more "
                  "= top of the colour map (pale yellow 0 -> dark red)")

        if args.snapshot:
            if lsl:
                print("imusic view: --snapshot works on a SOURCE or --blendshapes, not --lsl",
                      file=sys.stderr)
                return 2
            a, b = _snapshot_frames(track, second, args.frame, extra)
            snapshot(args.snapshot, a, b, **options)
            print(f"wrote {args.snapshot}")
            return 0

        with ensure_display():
            from imusic.viewer.face_view import LIVE_TRIANGLES, FaceWindow  # heavy import kept late

            options["live_triangles"] = None if args.full_detail else LIVE_TRIANGLES[n_faces]

            if lsl:
                infos = [resolve_blendshapes(name or None, args.timeout) for name in lsl]
                names = " | ".join(i.name() for i in infos)
                print(f"showing LSL {names}; {keys_help(LIVE_KEYS)}")
                sources = [LslSource(i) for i in infos]
                try:
                    for s in sources:
                        s.start()
                    with FaceWindow(n_faces, title=f"imusic view: {names}", keys=LIVE_KEYS,
                                    **options) as win:
                        run_live(win, sources, max_seconds=args.duration)
                finally:
                    for s in sources:
                        s.stop()
                return 0
            if track is None:
                weights = extra if extra is not None else np.zeros(52, np.float32)
                from imusic.viewer.sources import Track

                track = Track.from_array(weights[None], 60.0, "pose")
            player = Player(track.n_frames, track.rate_hz, speed=args.speed,
                            loop=not args.no_loop)
            player.seek_frame(args.frame)
            title = f"imusic view: {track.name}" + (f" vs {second.name}" if second else "")
            print(f"replaying {track.n_frames} frames at {track.rate_hz:g} Hz; "
                  f"{keys_help(REPLAY_KEYS)}")
            with FaceWindow(n_faces, title=title, keys=REPLAY_KEYS, **options) as win:
                run_replay(win, track, second, player, max_seconds=args.duration)
        return 0
    except (SourceError, StreamNotFound, DisplayError, WindowError, KeyError) as err:
        print(f"imusic view: {err}", file=sys.stderr)
        return 1


def _track(path: str, rate_hz: float):
    """``viewer.sources.load_track``, with a file that is not what its name says (a CSV that
    is not a Live Link Face take, a binary file, a .npy of pickled objects) as a SourceError
    naming the file."""
    from imusic.capture.livelink_csv import LiveLinkCSVError
    from imusic.viewer.sources import SourceError, load_track

    try:
        return load_track(path, rate_hz)
    except SourceError:
        raise
    except LiveLinkCSVError as err:   # names the file and line already
        raise SourceError(str(err)) from None
    except ValueError as err:
        raise SourceError(f"{path}: cannot be read as blendshapes ({err})") from None


def _session_rig(path: str) -> str | None:
    """The rig id written in a session's aligned group, if any."""
    from imusic.capture.session import SessionError, open_h5, reading

    try:
        with open_h5(path) as h5, reading(path, "the aligned group"):
            if "aligned" in h5:
                return str(h5["aligned"].attrs.get("rig_id", "")) or None
    except (SessionError, KeyError):
        return None
    return None


def _snapshot_frames(track, second, frame, extra):
    """The weights to render for --snapshot (frame of SOURCE [+ --blendshapes])."""
    import numpy as np

    from imusic.viewer.sources import pair_frames

    if track is None:
        a = extra if extra is not None else np.zeros(52, np.float32)
        return a, None
    if not 0 <= frame < track.n_frames:
        raise KeyError(f"--frame {frame} is outside {track.name} (0..{track.n_frames - 1})")
    a = track.frame(frame).copy()                  # 61 values: the pose turns the head
    if extra is not None:
        a[:len(extra)] += extra
    b = second.frame(pair_frames(track, second)[frame]) if second is not None else None
    return a, b
