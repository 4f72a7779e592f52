"""Recording protocols as data: takes of steps, loaded from TOML or JSON.

A protocol (``capture/protocols/<name>.toml`` for the shipped ones, or any ``.toml`` /
``.json`` file) is a list of takes; a take is a list of steps. Each take becomes one
session file (capture/protocol_session.py runs them); each step is shown to the participant
as a prompt and written as a start and an end marker.

Step fields: ``marker`` (name of its markers, ``[A-Za-z0-9_-]``), ``prompt`` (text for the
participant), ``kind`` (``neutral`` hold, chin ``tap``, ``expression``, ``speech`` or
``rest``: what the calibration, sync and the emulator's actor make of it), ``target``
(optional: ARKit blendshape names -> levels in [0, 1], the face to show and to act),
``seconds`` (its duration) and ``until = "continue"`` (the step lasts until the experimenter
continues; ``seconds`` is then what a headless or emulated run uses).

Every take starts with a ``neutral`` step then a ``tap`` step: calibration needs the still
neutral face and sync the tap (capture/sync.py). The loader refuses a protocol otherwise, with
one line naming the file and the field (``ProtocolError``).
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imusic.hardware.vocabulary import ARKIT_NAMES

KINDS = ("neutral", "tap", "expression", "speech", "rest")
"""What a step asks of the participant."""
NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
"""Markers, task and protocol names: safe in file names and marker text."""
SHIPPED_DIR = Path(__file__).with_name("protocols")
"""Folder of the shipped protocols (package data of ``capture``)."""


class ProtocolError(ValueError):
    """A protocol that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class Step:
    """One prompt of a take."""

    marker: str
    prompt: str
    kind: str = "rest"
    seconds: float = 5.0
    until_continue: bool = False
    target: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Take:
    """One recording: a task name (``task-<name>`` in the file name) and its steps."""

    task: str
    steps: tuple[Step, ...]
    title: str = ""

    @property
    def seconds(self) -> float:
        """Planned duration (``until continue`` steps counted at their ``seconds``)."""
        return sum(s.seconds for s in self.steps)


@dataclass(frozen=True)
class Protocol:
    """A named list of takes."""

    name: str
    takes: tuple[Take, ...]
    description: str = ""
    source: str = ""


def shipped_protocols() -> list[str]:
    """Names of the protocols shipped with imusic."""
    return sorted(p.stem for p in SHIPPED_DIR.glob("*.toml"))


def load_protocol(name_or_path: str | Path) -> Protocol:
    """A shipped protocol by name (``imusic-paper``) or a protocol file."""
    text = str(name_or_path)
    if text in shipped_protocols():
        res = SHIPPED_DIR / f"{text}.toml"
        return parse_protocol(res.read_text(encoding="utf-8"), str(res), "toml")
    path = Path(text)
    if not path.is_file():
        raise ProtocolError(f"{text}: no such protocol file, and not a shipped protocol "
                            f"({', '.join(shipped_protocols())})")
    fmt = "json" if path.suffix.lower() == ".json" else "toml"
    try:
        data = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ProtocolError(f"{path}: cannot read it ({err})") from None
    return parse_protocol(data, str(path), fmt)


def parse_protocol(text: str, where: str = "<protocol>", fmt: str = "toml") -> Protocol:
    """Parse protocol text (``fmt`` ``toml`` or ``json``); ``ProtocolError`` if unusable."""
    try:
        data = tomllib.loads(text) if fmt == "toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise ProtocolError(f"{where}: not valid {fmt.upper()}: "
                            f"{str(err).splitlines()[0] if str(err) else type(err).__name__}"
                            ) from None
    return protocol_from_dict(data, where)


def _need(d: Any, key: str, typ: type | tuple, where: str, default: Any = ...) -> Any:
    if not isinstance(d, dict):
        raise ProtocolError(f"{where}: expected a table")
    if key not in d:
        if default is ...:
            raise ProtocolError(f"{where}.{key}: missing")
        return default
    v = d[key]
    if isinstance(v, bool) and typ in (int, float, (int, float)):
        raise ProtocolError(f"{where}.{key}: expected a number, got {v!r}")
    if not isinstance(v, typ):
        want = typ.__name__ if isinstance(typ, type) else "number"
        raise ProtocolError(f"{where}.{key}: expected {want}, got {type(v).__name__}")
    return v


def _name(d: dict, key: str, where: str, default: Any = ...) -> str:
    v = _need(d, key, str, where, default)
    if not NAME_RE.match(v):
        raise ProtocolError(f"{where}.{key}: {v[:40]!r} must be 1-64 letters, digits, _ or -")
    return v


def _step(d: Any, where: str) -> Step:
    marker = _name(d, "marker", where)
    prompt = _need(d, "prompt", str, where)
    if not prompt.strip():
        raise ProtocolError(f"{where}.prompt: empty")
    kind = _need(d, "kind", str, where, "rest")
    if kind not in KINDS:
        raise ProtocolError(f"{where}.kind: {kind[:40]!r} is not one of {', '.join(KINDS)}")
    until = _need(d, "until", str, where, "")
    if until not in ("", "continue"):
        raise ProtocolError(f"{where}.until: only \"continue\" is known, got {until[:40]!r}")
    if "seconds" not in d and not until:
        raise ProtocolError(f"{where}.seconds: missing (or say until = \"continue\")")
    seconds = float(_need(d, "seconds", (int, float), where, 5.0))
    if not 0.1 <= seconds <= 3600:
        raise ProtocolError(f"{where}.seconds: {seconds:g} is outside 0.1..3600")
    target_raw = _need(d, "target", dict, where, {})
    target = {}
    for k, v in target_raw.items():
        if k not in ARKIT_NAMES:
            raise ProtocolError(f"{where}.target.{k[:40]}: not an ARKit blendshape name "
                                "(Apple's spelling, e.g. jawOpen)")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
            raise ProtocolError(f"{where}.target.{k}: level must be a number in [0, 1]")
        target[k] = float(v)
    extra = set(d) - {"marker", "prompt", "kind", "until", "seconds", "target"}
    if extra:
        raise ProtocolError(f"{where}.{sorted(extra)[0][:40]}: unknown field")
    return Step(marker=marker, prompt=prompt.strip(), kind=kind, seconds=seconds,
                until_continue=until == "continue", target=target)


def protocol_from_dict(data: Any, where: str = "<protocol>") -> Protocol:
    """Validate decoded TOML/JSON into a ``Protocol``."""
    name = _name(data, "name", where)
    description = _need(data, "description", str, where, "")
    takes_raw = _need(data, "take", list, where)
    if not takes_raw:
        raise ProtocolError(f"{where}.take: no takes")
    takes = []
    seen: set[str] = set()
    for i, t in enumerate(takes_raw):
        tw = f"{where}.take[{i}]"
        task = _name(t, "task", tw)
        if task in seen:
            raise ProtocolError(f"{tw}.task: {task!r} is used twice (task names name the files)")
        seen.add(task)
        steps_raw = _need(t, "step", list, tw)
        steps = tuple(_step(s, f"{tw}.step[{j}]") for j, s in enumerate(steps_raw))
        if len(steps) < 2 or steps[0].kind != "neutral" or steps[1].kind != "tap":
            raise ProtocolError(f"{tw}.step: a take must start with a neutral hold then a chin "
                                "tap (kind = \"neutral\", then kind = \"tap\"): calibration and "
                                "sync need them")
        markers = [s.marker for s in steps]
        if len(set(markers)) != len(markers):
            raise ProtocolError(f"{tw}.step: marker names repeat within the take")
        takes.append(Take(task=task, steps=steps, title=_need(t, "title", str, tw, "")))
    return Protocol(name=name, takes=tuple(takes), description=description, source=where)
