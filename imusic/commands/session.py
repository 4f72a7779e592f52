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


def _ask(rec) -> str:
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

    from capture.protocol import ProtocolError, load_protocol
    from capture.protocol_session import ProtocolRunner, RunnerConfig, StreamsMissing

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

    def on_update(state: dict) -> None:
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
    print(f"imusic session: protocol {protocol.name} ({len(protocol.takes)} takes) for "
          f"{args.participant} into {args.output}" + (" (emulated)" if args.emulate else ""),
          file=sys.stderr, flush=True)
    code = 0
    try:
        runner.run(ask=None if args.headless else _ask_and_continue(runner))
    except StreamsMissing as err:
        print(f"imusic session: {err}", file=sys.stderr)
        code = 3
    except KeyboardInterrupt:
        code = 130
    finally:
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


def _ask_and_continue(runner):
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
    return _ask
