"""``imusic session``: run a recording protocol take by take, with markers and quality checks."""

from __future__ import annotations

import argparse

HELP = "run a guided recording protocol: prompts, one file per take, markers, quality.json"
EXAMPLE = ("imusic session imusic-paper --participant p01 -o data/p01 --emulate --headless"
           "\n  imusic session imusic-rom --participant p02 -o data/p02")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``imusic session``."""
    parser.add_argument("protocol", metavar="PROTOCOL",
                        help="a protocol file (.toml/.json) or a shipped name: imusic-paper, "
                             "imusic-rom")
    parser.add_argument("--participant", required=True, metavar="ID",
                        help="participant id (letters and digits go into the file names)")
    parser.add_argument("-o", "--output", required=True, metavar="DIR",
                        help="folder for the take files and quality.json")
    parser.add_argument("--session", type=int, default=1, metavar="N",
                        help="session number (ses-N in the file names, default 1)")
    parser.add_argument("--headless", action="store_true",
                        help="no keys: 'until continue' steps last their planned seconds and "
                             "the session runs through")
    parser.add_argument("--emulate", action="store_true",
                        help="no hardware: the twin acts the protocol on an emulated wearable "
                             "and a replayed phone")
    parser.add_argument("--auto-redo", type=int, default=0, metavar="N",
                        help="redo a take that fails the quality check up to N times")
    parser.add_argument("--wait", type=float, default=20.0, metavar="S",
                        help="seconds to wait for the IMU and Blendshapes streams (default 20)")
    parser.add_argument("--streams-by", nargs="+", default=None, metavar="NAME",
                        help="record only streams with these names or source ids")
    parser.add_argument("--seed", type=int, default=0, help="--emulate: the actor's seed")
    parser.add_argument("--web", type=int, default=None, metavar="PORT",
                        help="serve the participant and experimenter pages on PORT (0: any "
                             "free port; the address is printed)")
    parser.add_argument("--web-host", default="127.0.0.1", metavar="HOST",
                        help="address the pages are served on (default 127.0.0.1: this "
                             "computer only; 0.0.0.0 lets a second screen on the network in)")


def _ask(rec, screen=None) -> str:
    import contextlib

    with screen.paused() if screen is not None else contextlib.nullcontext():
        return _ask_terminal(rec)


def _ask_terminal(rec) -> str:
    import sys

    q = rec.quality
    verdict = "ok" if q.get("ok") else "REDO suggested: " + "; ".join(q.get("reasons", []))
    print(f"take {rec.task} run {rec.run}: {verdict}", file=sys.stderr)
    try:
        key = input("[Enter] next take, r + Enter redo it, q + Enter quit: ").strip().lower()
    except EOFError:
        return "next"
    return {"r": "redo", "q": "quit"}.get(key[:1], "next")


def run(args: argparse.Namespace) -> int:
    """Run the protocol; exit 3 if a required stream never appeared."""
    import sys

    from imusic.capture.protocol import ProtocolError, load_protocol
    from imusic.capture.protocol_session import ProtocolRunner, RunnerConfig, StreamsMissing

    try:
        protocol = load_protocol(args.protocol)
    except ProtocolError as err:
        print(f"imusic session: {err}", file=sys.stderr)
        return 2
    actor = None
    if args.emulate:
        from imusic.session_actor import EmulatedParticipant

        actor = EmulatedParticipant(seed=args.seed)
    last: dict = {}
    use_screen = not args.headless and sys.stdout.isatty()

    def on_update(state: dict) -> None:
        if use_screen:
            return
        key = (state.get("take"), state.get("step"), state.get("phase"))
        if key != last.get("key"):
            last["key"] = key
            if state.get("phase") == "recording":
                wait = "  [Enter when done]" if state.get("waiting_continue") else ""
                print(f"[{state['take']} {state['step_index']}/{state['step_count']}] "
                      f"{state['prompt']}{wait}", file=sys.stderr, flush=True)

    try:
        runner = ProtocolRunner(protocol, args.participant, args.output, session=args.session,
                                config=RunnerConfig(stream_deadline_s=args.wait,
                                                    auto_redo=args.auto_redo),
                                names=args.streams_by, actor=actor,
                                interactive=not args.headless, on_update=on_update)
    except ValueError as err:
        print(f"imusic session: --participant: {err}", file=sys.stderr)
        return 2
    from imusic.session_state import ScreenState

    faces = web = screen = None
    if args.web is not None:        # the terminal panel shows no picture
        from imusic.session_faces import FaceCache

        faces = FaceCache([s.target for t in protocol.takes for s in t.steps])
    state = ScreenState(runner, health=actor.health if actor is not None else None, faces=faces)
    if args.web is not None:
        from imusic.session_web import SessionWeb

        try:
            web = SessionWeb(runner, state, faces, host=args.web_host, port=args.web).start()
        except OSError as err:
            print(f"imusic session: --web {args.web_host}:{args.web}: {err.strerror or err} "
                  "(choose another port, or 0 for any free one)", file=sys.stderr)
            if actor is not None:
                actor.close()
            return 2
        faces.start()
        print(f"imusic session: participant page {web.url}/participant , experimenter page "
              f"{web.url}/experimenter", file=sys.stderr, flush=True)
    print(f"imusic session: protocol {protocol.name} ({len(protocol.takes)} takes) for "
          f"{args.participant} into {args.output}" + (" (emulated)" if args.emulate else ""),
          file=sys.stderr, flush=True)
    code = 0
    try:
        if use_screen:
            from imusic.session_screen import SessionScreen

            screen = SessionScreen(state).__enter__()
        runner.run(ask=None if args.headless else _ask_and_continue(runner, screen))
    except StreamsMissing as err:
        print(f"imusic session: {err}", file=sys.stderr)
        code = 3
    except KeyboardInterrupt:
        code = 130
    finally:
        if screen is not None:
            screen.__exit__(None, None, None)
        if web is not None:
            web.close()
        if faces is not None:
            faces.close()
        if actor is not None:
            actor.close()
    for t in runner.takes:
        q = t.quality
        if q:
            print(f"  {t.path.name}: {'ok' if q.get('ok') else 'REDO'}  lost "
                  f"{100 * q.get('imu_lost_share', 1):.1f}%  face-lost "
                  f"{100 * q.get('face_lost_share', 1):.1f}%  tap "
                  f"{'yes' if q.get('tap_found') else 'no'}  sync "
                  f"{q.get('sync_confidence', 0):.2f}  neutral {q.get('neutral_s', 0):.1f} s"
                  + ("" if q.get("ok") else "  (" + "; ".join(q.get("reasons", [])) + ")"))
    if (runner.out_dir / "quality.json").exists():
        print(f"quality report: {runner.out_dir / 'quality.json'}")
    return code


def _ask_and_continue(runner, screen=None):
    """Interactive: Enter continues a waiting step; after a take, ask next / redo / quit."""
    import sys
    import threading

    def watcher() -> None:
        while runner.state.get("phase") not in ("done",):
            if runner.state.get("waiting_continue"):
                try:
                    sys.stdin.readline()
                except (OSError, ValueError):
                    return
                runner.request_continue()
            else:
                runner.stop_event.wait(0.05)

    threading.Thread(target=watcher, daemon=True).start()
    return lambda rec: _ask(rec, screen)
