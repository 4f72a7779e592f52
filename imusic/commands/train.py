"""``imusic train``: train the IMUSIC model (both stages) and write a checkpoint."""

from __future__ import annotations

import argparse

HELP = "train the two-stage IMU -> blendshape model on aligned sessions (CPU by default)"
EXAMPLE = ("imusic train --data data/twin --out runs/imusic11 [--config cfg.json] [--resume] | "
           "imusic train --data sessions/ --out runs/mine --holdout-take testcase_2 "
           "--val-fraction 0.2 --patience 4 [--init runs/base]")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``imusic train``."""
    parser.add_argument("--data", required=True, metavar="DIR",
                        help="folder of session files with an 'aligned' group (real or twin)")
    parser.add_argument("--out", required=True, metavar="CKPT",
                        help="checkpoint folder to write (model.safetensors + config.json)")
    parser.add_argument("--config", metavar="JSON",
                        help="JSON file with training settings to change (see model/MODEL.md)")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run from the checkpoint in --out")
    parser.add_argument("--stage1-steps", type=int, default=None, metavar="N")
    parser.add_argument("--stage2-steps", type=int, default=None, metavar="N")
    parser.add_argument("--device", default=None, help="cpu (default) or cuda")
    parser.add_argument("--seed", type=int, default=None, help="training seed (default 0)")
    parser.add_argument("--no-eval", action="store_true",
                        help="skip the final held-out evaluation written into the config")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--holdout-subject", action="append", default=None, metavar="SUBJECT",
                        help="hold out this subject's head shape (every session whose "
                             "'identity' is that subject's, e.g. participant_3; repeat for "
                             "more; without --holdout-*: chosen from the data)")
    parser.add_argument("--holdout-take", action="append", default=None, metavar="TAKE",
                        help="hold out the sessions of this take (their 'take' attribute, "
                             "e.g. testcase_2; repeat for more)")
    parser.add_argument("--val-fraction", type=float, default=None, metavar="F",
                        help="validate on the last F of every training session (early "
                             "stopping watches it; default 0: the held-out sessions)")
    parser.add_argument("--patience", type=int, default=None, metavar="N",
                        help="stop a stage after N evaluations without improvement and keep "
                             "its best weights (default 0: off)")
    parser.add_argument("--eval-every", type=int, default=None, metavar="STEPS",
                        help="steps between validation evaluations (default 250)")
    parser.add_argument("--orientation", choices=("auto", "ahrs", "reported"), default=None,
                        help="features from AHRS-estimated or device-reported orientation "
                             "(default auto: reported when the sessions have quaternions and "
                             "no gyroscope)")
    parser.add_argument("--init", default=None, metavar="CKPT",
                        help="fine-tune this checkpoint on --data (its rig and features must "
                             "match the sessions')")


class _CtrlC:
    """SIGINT while training: the first one asks the loop to save and stop after the step in
    progress; before the loop has started (loading data), or a second time, it stops at once."""

    def __init__(self) -> None:
        self.requested = False
        self.training = False
        self._previous = None

    def __call__(self) -> bool:
        """``should_stop`` for ``model.train.train``: called after every step."""
        self.training = True
        return self.requested

    def _signal(self, signum, frame) -> None:
        if self.requested or not self.training:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> "_CtrlC":
        import signal

        self._previous = signal.signal(signal.SIGINT, self._signal)
        return self

    def __exit__(self, *exc) -> None:
        import signal

        signal.signal(signal.SIGINT, self._previous)


def _resumed_settings(cfg, args: argparse.Namespace, given: set[str]):
    """--resume: the settings the run was started with (saved in the checkpoint), except those
    given again now in --config or on the command line."""
    import dataclasses
    import json
    from pathlib import Path

    from imusic.model import checkpoint as ckpt

    path = Path(args.out) / ckpt.CONFIG
    if not path.is_file():
        return cfg   # train() says there is nothing to resume
    _, saved = ckpt.load(args.out)
    if args.config:
        given |= set(json.loads(Path(args.config).read_text()))
    names = {f.name for f in dataclasses.fields(cfg)}
    old = saved.get("train", {}) if isinstance(saved.get("train"), dict) else {}
    return dataclasses.replace(cfg, **{k: v for k, v in old.items()
                                       if k in names and k not in given})


def run(args: argparse.Namespace) -> int:
    """Train, print where the checkpoint is and its held-out numbers."""
    import os
    import shlex
    import sys

    from imusic.model.train import TrainConfig, TrainingInterrupted, train

    try:
        flags = dict(stage1_steps=args.stage1_steps, stage2_steps=args.stage2_steps,
                     device=args.device, seed=args.seed,
                     final_eval=False if args.no_eval else None,
                     holdout_subjects=args.holdout_subject, holdout_takes=args.holdout_take,
                     val_fraction=args.val_fraction, patience=args.patience,
                     eval_every=args.eval_every, orientation=args.orientation)
        cfg = TrainConfig.from_json(args.config, **flags)
        if args.init and args.resume:
            raise ValueError("--init and --resume exclude each other: --resume continues the "
                             "run in --out, --init starts a new one from a checkpoint")
        if args.resume:
            cfg = _resumed_settings(cfg, args, {k for k, v in flags.items() if v is not None})
        command = "imusic train " + " ".join(shlex.quote(a) for a in sys.argv[2:]) \
            if len(sys.argv) > 1 and sys.argv[1] == "train" else None
        with _CtrlC() as ctrl_c:
            config = train(args.data, args.out, cfg, resume=args.resume, command=command,
                           progress=not args.quiet, should_stop=ctrl_c, init=args.init)
    except TrainingInterrupted as stop:
        print(f"imusic train: interrupted: {stop}; continue with 'imusic train --data "
              f"{shlex.quote(args.data)} --out {shlex.quote(args.out)} --resume'",
              file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError, KeyError) as err:
        print(f"imusic train: {err}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) != 0:
        return 0   # under torchrun only rank 0 reports
    m = config["metrics"]
    print(f"checkpoint: {args.out} (trained in {m['train_time_s']:.0f} s)")
    if "eval" in m:
        from rich.console import Console

        from imusic.model.evaluate import table
        console = Console() if Console().is_terminal else Console(width=150)
        for part, res in m["eval"].items():
            console.print(table(res, f"{part} (MAE ×100)"))
    return 0
