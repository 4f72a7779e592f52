"""The guided-session runner: a protocol (capture/protocol.py) played take by take.

Why here: the runner only needs LSL, the recorder, sync and the quality check, all in
``capture``; what acts out a protocol without hardware (the emulator and a replayed phone)
is composed in ``imusic/session_actor.py`` and handed in as an ``actor``.

Per take (``ProtocolRunner.run_take``):

1. if there is an actor, ``actor.begin(plan)`` starts the twin acting the take and returns the
   LSL time at which the plan's time 0 falls (steps are then scheduled on it);
2. the required streams (``RunnerConfig.required``: IMU and Blendshapes) must be on LSL and
   deliver samples within ``stream_deadline_s``, else ``StreamsMissing``;
3. a ``capture.recorder.Recorder`` (public API only) records to
   ``sub-<id>_ses-<n>_task-<task>_run-<k>.h5`` (``take_file_name``; an existing file is never
   reused: the run number goes up);
4. every step's start and end go out as JSON strings on the runner's ``Markers`` outlet
   (``marker_text``; LabRecorder records them too) and, after the take, into the file's
   ``/protocol`` group (``write_protocol_group``);
5. ``capture.take_quality.assess_take`` judges the take; ``quality.json`` in the output folder
   is rewritten with every take so far and which tasks need a redo.

While a take records, ``curves`` (capture/live_curves.py) keeps the last seconds of the
Blendshapes stream the recorder writes, for the experimenter page's live curves.

Redo: ``request_redo(task)`` (a key in the terminal, a button on the web page, or
``auto_redo`` for failing takes) queues the task again as the next run.
"""

from __future__ import annotations

import json
import queue
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol as TypingProtocol, Sequence

import numpy as np

from imusic.capture.live_curves import LiveCurves
from imusic.capture.protocol import Protocol, Step, Take
from imusic.capture.recorder import Recorder
from imusic.capture.take_quality import QualityConfig, assess_take, config_dict
from imusic.firmware_bridge.streams import MARKERS_TYPE

MARKER_TYPE = MARKERS_TYPE
QUALITY_FILE = "quality.json"
_LABEL_RE = re.compile(r"[^A-Za-z0-9]")


class StreamsMissing(RuntimeError):
    """A required stream never appeared (the message names it and what to start)."""


@dataclass
class RunnerConfig:
    """Timing and requirements of a guided session."""

    required: tuple[str, ...] = ("IMU", "Blendshapes")
    """Stream types that must be on LSL before a take starts."""
    stream_deadline_s: float = 20.0
    """Seconds to wait for the required streams (and their first samples)."""
    min_samples: int = 20
    """Samples each required stream must have delivered to the recorder before a take starts."""
    tail_s: float = 0.5
    """Seconds recorded after the last step ends."""
    marker_deadline_s: float = 5.0
    """Seconds to wait for the recorder to receive the take's markers before stopping."""
    auto_redo: int = 0
    """Headless: redo a failing take up to this many times."""
    poll_s: float = 0.02
    """Seconds between checks while waiting (a step's start, the recorder, its markers)."""
    step_poll_s: float = 0.05
    """Longest wait, s, between checks for stop and continue while a step runs."""
    quality: QualityConfig = field(default_factory=QualityConfig)
    """Thresholds of the per-take quality check (capture/take_quality.py)."""


class Actor(TypingProtocol):
    """What acts a take without hardware (imusic/session_actor.py)."""

    names: list[str]

    def begin(self, plan: list[tuple[float, float, str, dict]]) -> float: ...

    def end(self) -> None: ...


def bids_label(text: str) -> str:
    """A BIDS label: letters and digits only (anything else is dropped)."""
    label = _LABEL_RE.sub("", str(text))
    if not label:
        raise ValueError(f"{text!r} has no letters or digits to make a file-name label of")
    return label


def take_file_name(participant: str, session: int | str, task: str, run: int) -> str:
    """``sub-<id>_ses-<n>_task-<name>_run-<k>.h5`` (BIDS-like)."""
    return (f"sub-{bids_label(participant)}_ses-{bids_label(session)}_"
            f"task-{bids_label(task)}_run-{int(run)}.h5")


def marker_text(protocol: str, task: str, run: int, step: str, edge: str) -> str:
    """The text of one step marker (``edge``: start or end)."""
    return json.dumps({"protocol": protocol, "task": task, "run": run, "step": step,
                       "edge": edge}, separators=(",", ":"))


def parse_marker(text: str) -> dict[str, Any] | None:
    """A step marker back as a dict; None for any other marker text."""
    try:
        d = json.loads(text)
    except (ValueError, TypeError):
        return None
    if isinstance(d, dict) and {"protocol", "task", "step", "edge"} <= set(d):
        return d
    return None


def write_protocol_group(path: str | Path, protocol: Protocol, take: Take, run: int,
                         participant: str, session: int, steps: Sequence[dict]) -> None:
    """Add ``/protocol`` to a closed take file: attrs and one ``steps`` table row per step."""
    import h5py

    with h5py.File(path, "r+") as h5:
        g = h5.require_group("protocol")
        g.attrs.update({"name": protocol.name, "task": take.task, "run": int(run),
                        "participant": participant, "session": int(session),
                        "source": protocol.source})
        dt = np.dtype([("marker", h5py.string_dtype()), ("kind", h5py.string_dtype()),
                       ("prompt", h5py.string_dtype()), ("start", "f8"), ("end", "f8"),
                       ("target", h5py.string_dtype())])
        rows = np.array([(s["marker"], s["kind"], s["prompt"], s["start"], s["end"],
                          json.dumps(s["target"])) for s in steps], dtype=dt)
        if "steps" in g:
            del g["steps"]
        g.create_dataset("steps", data=rows)


def read_protocol_steps(path: str | Path) -> list[dict]:
    """The ``/protocol/steps`` table of a take file as dicts."""
    import h5py

    with h5py.File(path, "r") as h5:
        rows = h5["protocol/steps"][()]
    dec = lambda v: v.decode() if isinstance(v, bytes) else str(v)  # noqa: E731
    return [{"marker": dec(r["marker"]), "kind": dec(r["kind"]), "prompt": dec(r["prompt"]),
             "start": float(r["start"]), "end": float(r["end"]),
             "target": json.loads(dec(r["target"]))} for r in rows]


@dataclass
class TakeRecord:
    """One recorded take (a run of a task)."""

    task: str
    run: int
    path: Path
    quality: dict[str, Any] = field(default_factory=dict)
    status: str = "pending"     # pending | recording | checking | ok | redo | redone | failed


class ProtocolRunner:
    """Runs a protocol take by take; see the module doc. ``on_update(state)`` is called from
    the runner's thread whenever the state (current prompt, takes, streams) changes."""

    def __init__(self, protocol: Protocol, participant: str, out_dir: str | Path, *,
                 session: int = 1, config: RunnerConfig | None = None,
                 names: Sequence[str] | None = None, actor: Actor | None = None,
                 interactive: bool = False, marker_name: str | None = None,
                 on_update: Callable[[dict], None] | None = None) -> None:
        import pylsl

        from imusic.firmware_bridge.streams import markers_info

        self.protocol = protocol
        self.participant = participant
        bids_label(participant)                       # refuse an unusable id before anything
        self.out_dir = Path(out_dir)
        self.session = int(session)
        self.config = config or RunnerConfig()
        self.actor = actor
        self.interactive = interactive
        self.on_update = on_update
        tag = getattr(actor, "tag", "")      # an emulated run: its streams' tag, so that two
        self.marker_name = marker_name or (  # runs on one network never share a stream
            f"imusic-session-{bids_label(participant)}" + (f"-{tag}" if tag else ""))
        self.names = (list(names) + [self.marker_name] if names is not None
                      else (actor.names + [self.marker_name] if actor is not None else None))
        self.outlet = pylsl.StreamOutlet(markers_info(
            self.marker_name, f"{self.marker_name}-markers", {"protocol": protocol.name}))
        self.takes: list[TakeRecord] = []
        self.markers_sent = 0
        self.markers_before = 0
        """Markers sent before the current take (the recorder of a take sees only its own)."""
        self.continue_event = threading.Event()
        self.stop_event = threading.Event()
        self.redo_queue: "queue.Queue[str]" = queue.Queue()
        self.recorder: Recorder | None = None
        self.curves = LiveCurves()
        """The Blendshapes stream's last seconds, fed by each take's recorder (the page's
        live curves, capture/live_curves.py)."""
        self.lock = threading.Lock()
        self.state: dict[str, Any] = {"protocol": protocol.name, "participant": participant,
                                      "phase": "idle", "take": None, "step": None,
                                      "prompt": "", "target": {}, "step_index": 0,
                                      "step_count": 0, "step_ends_at": None,
                                      "waiting_continue": False, "streams": [], "takes": []}

    # ------------------------------------------------------------------ control (any thread)
    def request_continue(self) -> None:
        """The experimenter continues an ``until continue`` step."""
        self.continue_event.set()

    def request_redo(self, task: str) -> bool:
        """Queue ``task`` for another run; False if the protocol has no such task."""
        if task not in [t.task for t in self.protocol.takes]:
            return False
        self.redo_queue.put(task)
        return True

    def request_stop(self) -> None:
        """Stop after the current step (what is recorded is kept)."""
        self.stop_event.set()
        self.continue_event.set()

    def snapshot(self) -> dict[str, Any]:
        """A copy of the live state, with the recorder's stream status."""
        with self.lock:
            st = dict(self.state)
        rec = self.recorder
        if rec is not None:
            st["streams"] = [{"key": s.key, "name": s.name, "type": s.type,
                              "samples": s.samples, "gaps": s.gaps, "lost": s.lost}
                             for s in list(rec.status.values()) if s.key]
            st["status_line"] = rec.status_line()
        st["takes"] = [{"task": t.task, "run": t.run, "file": t.path.name, "status": t.status,
                        "reasons": t.quality.get("reasons", []),
                        **{k: t.quality.get(k) for k in ("imu_lost_share", "face_lost_share",
                                                          "sync_confidence", "tap_found",
                                                          "neutral_s")}}
                       for t in self.takes]
        return st

    def _set(self, **kw: Any) -> None:
        with self.lock:
            self.state.update(kw)
        if self.on_update:
            self.on_update(self.snapshot())

    # ------------------------------------------------------------------ running
    def run(self, ask: Callable[[TakeRecord], str] | None = None) -> list[TakeRecord]:
        """Every take in order, then queued redos. ``ask(record)`` (interactive) returns
        ``"next"``, ``"redo"`` or ``"quit"`` after each take."""
        todo = list(self.protocol.takes)
        by_task = {t.task: t for t in self.protocol.takes}
        tries: dict[str, int] = {}
        while todo and not self.stop_event.is_set():
            take = todo.pop(0)
            rec = self.run_take(take)
            answer = ask(rec) if ask is not None else "next"
            if answer == "quit":
                break
            failing = not rec.quality.get("ok", False)
            if answer == "redo" or (failing and tries.get(take.task, 0) < self.config.auto_redo):
                tries[take.task] = tries.get(take.task, 0) + 1
                todo.insert(0, take)
            while not self.redo_queue.empty():
                name = self.redo_queue.get()
                if by_task[name] not in todo[:1]:
                    todo.insert(0, by_task[name])
        self._set(phase="done", prompt="Thank you: the session is over.", target={},
                  step=None, step_ends_at=None)
        return self.takes

    def _next_run(self, task: str) -> int:
        run = 1 + sum(1 for t in self.takes if t.task == task)
        while (self.out_dir / take_file_name(self.participant, self.session, task, run)).exists():
            run += 1
        return run

    def _push(self, take: Take, run: int, step: Step, edge: str) -> float:
        import pylsl

        t = pylsl.local_clock()
        self.outlet.push_sample([marker_text(self.protocol.name, take.task, run, step.marker,
                                             edge)], t)
        self.markers_sent += 1
        return t

    def _wait_streams(self, rec: Recorder, deadline: float) -> None:
        need = list(self.config.required)
        missing = rec.wait_for_types(need + [MARKER_TYPE], max(0.0, deadline - time.monotonic()))
        if missing:
            raise StreamsMissing(
                f"no {', '.join(missing)} stream on LSL within {self.config.stream_deadline_s:g} s"
                f"{' (looking for ' + ', '.join(self.names) + ')' if self.names else ''}: start "
                "the wearable ('imusic stream') and the phone ('imusic arkit'), or use --emulate")
        for typ in need:
            if not rec.wait_for_samples(self.config.min_samples,
                                        max(0.0, deadline - time.monotonic()), typ):
                raise StreamsMissing(f"the {typ} stream is on LSL but sends no samples: check "
                                     "the device (battery, link) and its health line")
        while not self.outlet.have_consumers():
            if time.monotonic() > deadline:
                raise StreamsMissing(f"the recorder never opened the markers stream "
                                     f"{self.marker_name!r}")
            time.sleep(self.config.poll_s)

    def run_take(self, take: Take) -> TakeRecord:
        """Record one take (see the module doc); raises ``StreamsMissing``."""
        import pylsl

        self.out_dir.mkdir(parents=True, exist_ok=True)
        run = self._next_run(take.task)
        path = self.out_dir / take_file_name(self.participant, self.session, take.task, run)
        record = TakeRecord(task=take.task, run=run, path=path, status="recording")
        plan, t = [], 0.0
        for s in take.steps:
            plan.append((t, t + s.seconds, s.kind, dict(s.target)))
            t += s.seconds
        origin = None
        self._set(phase="starting", take=f"{take.task} run {run}", prompt="Getting ready...",
                  step=None, target={}, step_count=len(take.steps))
        if self.actor is not None:
            origin = self.actor.begin(plan)
        deadline = time.monotonic() + self.config.stream_deadline_s
        rec = Recorder(path, subject=self.participant, names=self.names,
                       on_data=self.curves.feed)
        self.recorder = rec
        self.takes.append(record)
        self.markers_before = self.markers_sent
        rec.start()
        table: list[dict] = []
        try:
            self._wait_streams(rec, deadline)
            for i, step in enumerate(take.steps):
                if self.stop_event.is_set():
                    break
                if origin is not None:       # the actor's timeline: wait for its step start
                    due = origin + plan[i][0]
                    while pylsl.local_clock() < due and not self.stop_event.is_set():
                        time.sleep(min(self.config.poll_s, max(0.0, due - pylsl.local_clock())))
                self.continue_event.clear()
                start = self._push(take, run, step, "start")
                waits = step.until_continue and self.interactive and origin is None
                ends = None if waits else start + step.seconds
                self._set(phase="recording", step=step.marker, prompt=step.prompt,
                          target=dict(step.target), step_index=i + 1, step_ends_at=ends,
                          waiting_continue=waits, kind=step.kind)
                if waits:
                    self.continue_event.wait()
                else:
                    while pylsl.local_clock() < ends and not self.stop_event.is_set():
                        self.continue_event.wait(min(self.config.step_poll_s,
                                                     max(0.0, ends - pylsl.local_clock())))
                        if self.continue_event.is_set() and step.until_continue:
                            break
                end = self._push(take, run, step, "end")
                table.append({"marker": step.marker, "kind": step.kind, "prompt": step.prompt,
                              "start": start, "end": end, "target": dict(step.target)})
            self._set(phase="finishing", prompt="Relax.", target={}, step=None,
                      step_ends_at=None, waiting_continue=False)
            time.sleep(self.config.tail_s)   # a fixed tail of recording, not a wait for a state
            self._wait_markers(rec)
        finally:
            rec.stop()
            if self.actor is not None:
                self.actor.end()
        record.status = "checking"
        self._set(phase="checking")
        write_protocol_group(path, self.protocol, take, run, self.participant, self.session,
                             table)
        record.quality = {"task": take.task, "run": run,
                          **assess_take(path, table, self.config.quality)}
        record.status = "ok" if record.quality.get("ok") else "redo"
        for older in self.takes[:-1]:
            if older.task == take.task and older.status in ("ok", "redo"):
                older.status = "redone"
        self.write_quality()
        self._set(phase="checked")
        return record

    def _wait_markers(self, rec: Recorder) -> None:
        """Until the recorder has every marker sent so far (the file must hold them)."""
        deadline = time.monotonic() + self.config.marker_deadline_s
        while time.monotonic() < deadline:
            got = sum(s.samples for s in list(rec.status.values())
                      if s.key and s.name == self.marker_name)
            if got >= self.markers_sent - self.markers_before:
                return
            time.sleep(self.config.poll_s)

    def write_quality(self) -> Path:
        """Rewrite ``quality.json`` with every take so far and the tasks to redo."""
        latest: dict[str, TakeRecord] = {}
        for t in self.takes:
            latest[t.task] = t
        redo = [t for t, r in latest.items() if not r.quality.get("ok", False)]
        doc = {"protocol": self.protocol.name, "participant": self.participant,
               "session": self.session, "thresholds": config_dict(self.config.quality),
               "takes": [{**t.quality, "status": t.status} for t in self.takes],
               "redo": redo}
        path = self.out_dir / QUALITY_FILE
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(doc, indent=1, default=float))
        tmp.replace(path)
        return path
