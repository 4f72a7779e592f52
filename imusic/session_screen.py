"""The terminal screen of ``imusic session``: a rich ``Live`` panel for people without a browser.

``SessionScreen(state)`` redraws, ``ScreenConfig.refresh_hz`` times a second, what the web
pages show (imusic/session_state.py's dict): the prompt and the seconds left, the device's
health (rate, loss, battery), the streams and the take list with each take's quality
verdict. ``render(state_dict)`` builds the panel (tests render it to text); ``paused()``
lets the command ask a question on the terminal between takes.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator


@dataclass
class ScreenConfig:
    """The terminal panel's timing."""

    refresh_hz: float = 4.0
    """Redraws per second."""


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def render(s: dict[str, Any]) -> Any:
    """The panel for one state dict."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    head = Text()
    head.append(f"{s.get('take') or '-'}", style="bold")
    if s.get("step"):
        head.append(f"  step {s.get('step_index')}/{s.get('step_count')} ({s['step']})")
    head.append(f"  {s.get('phase', '')}", style="dim")
    left = ("  until you continue (Enter)" if s.get("waiting_continue")
            else f"  {s['remaining_s']:.0f} s left" if s.get("remaining_s") is not None else "")
    prompt = Text(s.get("prompt") or "", style="bold yellow")
    prompt.append(left, style="dim")
    h = s.get("health") or {}
    health = Table.grid(padding=(0, 2))
    rate = "-" if h.get("rate_hz") is None else f"{h['rate_hz']:.1f} Hz"
    if h.get("nominal_hz"):
        rate += f" / {h['nominal_hz']:g}"
    batt = "unknown" if h.get("battery_pct") is None else f"{h['battery_pct']}%"
    health.add_row("device", str(h.get("device") or "-"), "state", str(h.get("state") or "-"))
    health.add_row("rate", rate, "loss", f"{_pct(h.get('loss'))} ({h.get('lost', '-')})")
    health.add_row("battery", batt, "IMU samples", str(h.get("imu_samples", 0)))
    takes = Table("take", "verdict", "lost", "face lost", "tap", "sync", "neutral",
                  box=None, header_style="bold")
    for t in s.get("takes", []):
        style = {"ok": "green", "redo": "red", "recording": "yellow"}.get(t["status"], "")
        verdict = t["status"] + (": " + "; ".join(t["reasons"]) if t.get("reasons") else "")
        takes.add_row(f"{t['task']} run {t['run']}", Text(verdict, style=style),
                      _pct(t.get("imu_lost_share")), _pct(t.get("face_lost_share")),
                      "-" if t.get("tap_found") is None else ("yes" if t["tap_found"] else "no"),
                      "-" if t.get("sync_confidence") is None else f"{t['sync_confidence']:.2f}",
                      "-" if t.get("neutral_s") is None else f"{t['neutral_s']:.1f} s")
    return Panel(Group(head, Panel(prompt, title="prompt"), Panel(health, title="health"),
                       takes), title=f"imusic session {s.get('protocol', '')} / "
                                     f"{s.get('participant', '')}")


class SessionScreen:
    """See the module doc; a context manager."""

    def __init__(self, state: Callable[[], dict], config: ScreenConfig | None = None) -> None:
        self.state = state
        self.config = config or ScreenConfig()
        self.live: Any = None

    def _panel(self) -> Any:
        return render(self.state())

    def __enter__(self) -> "SessionScreen":
        from rich.live import Live

        self.live = Live(get_renderable=self._panel, refresh_per_second=self.config.refresh_hz,
                         redirect_stderr=False)
        self.live.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.stop()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Stop redrawing while the terminal asks something."""
        if self.live is not None:
            self.live.stop()
        try:
            yield
        finally:
            if self.live is not None:
                self.live.start()
