"""The two screens of ``imusic session``: the web pages in a real headless chromium, the
terminal panel, and the ``/state`` JSON."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from imusic.capture.live_curves import CURVE_SHAPES, CurvesConfig
from imusic.session_state import clean

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL = """
name = "web3"
[[take]]
task = "mini"
  [[take.step]]
  marker = "neutral"
  kind = "neutral"
  prompt = "Relax your face"
  seconds = 2
  [[take.step]]
  marker = "tap"
  kind = "tap"
  prompt = "Tap your chin"
  seconds = 2
  [[take.step]]
  marker = "smile"
  kind = "expression"
  prompt = "Smile broadly"
  until = "continue"
  seconds = 3
  target = { mouthSmileLeft = 0.9, mouthSmileRight = 0.9 }
"""


class Session:
    """``imusic session --emulate --headless --web 0`` as a child; its stderr collected."""

    def __init__(self, proto: Path, out: Path, cache: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_CACHE_HOME": str(cache)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "imusic", "session", str(proto), "--participant", "w01",
             "-o", str(out), "--emulate", "--headless", "--web", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)

    def url(self, deadline_s: float = 60.0) -> str:
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            for line in list(self.lines):
                m = re.search(r"participant page (http://[0-9.:]+)/participant", line)
                if m:
                    return m.group(1)
            if self.proc.poll() is not None:
                break
            self.reader.join(0.05)
        raise AssertionError("no page address printed: " + "".join(self.lines)[-2000:])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def _chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
              "--disable-backgrounding-occluded-windows", "--window-size=1000,900"):
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"),
                            options=opts)


def test_pages_in_chromium_prompts_advance_health_and_curves_update_redo_makes_a_new_run(
        tmp_path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import Select, WebDriverWait

    proto = tmp_path / "web3.toml"
    proto.write_text(PROTOCOL)
    out = tmp_path / "w01"
    session = Session(proto, out, tmp_path / "cache")
    driver = None
    try:
        url = session.url()
        driver = _chromium()
        wait = WebDriverWait(driver, 60, poll_frequency=0.05)
        text = lambda el_id: driver.find_element(By.ID, el_id).text  # noqa: E731
        driver.get(url + "/experimenter")
        exp = driver.current_window_handle
        driver.switch_to.new_window("tab")
        driver.get(url + "/participant")
        part = driver.current_window_handle
        # the participant page: each prompt of the take in turn, with the time left
        for prompt in ("Relax your face", "Tap your chin", "Smile broadly"):
            wait.until(ec.text_to_be_present_in_element((By.ID, "prompt"), prompt))
        assert "mini run 1" in text("take")
        assert re.fullmatch(r"\d+ s|until the experimenter continues", text("remaining"))
        # the experimenter page: the health numbers move while the take records
        driver.switch_to.window(exp)
        wait.until(lambda d: re.fullmatch(r"\d+\.\d Hz / 100 Hz", text("rate")))
        first = int(text("samples"))
        wait.until(lambda d: int(text("samples")) > first)
        assert re.fullmatch(r"\d+\.\d\d % \(\d+\)", text("loss"))
        assert re.fullmatch(r"\d+ %", text("battery"))
        # redo: one press queues the take again; run 2 follows and the list shows both
        driver.find_element(By.ID, "redo").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "said"), "redo mini: queued"))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#takes tr[data-run='2']"))
        row1 = driver.find_element(By.CSS_SELECTOR, "#takes tr[data-run='1']")
        assert row1.get_attribute("data-status") in ("ok", "redone", "redo")
        # the live blendshape curves: the page's data moves while run 2 records, the canvas
        # has coloured lines, and the shapes can be chosen
        curves = lambda: driver.execute_script(  # noqa: E731
            "const c = window.lastCurves; return c ? JSON.stringify([c.kept, c.values]) : '';")
        wait.until(lambda d: curves())
        before = curves()
        wait.until(lambda d: curves() != before)
        got = driver.execute_script("return window.lastCurves;")
        assert got["shapes"] == list(CURVE_SHAPES) and got["stream"]
        assert 0 < len(got["t"]) <= CurvesConfig().max_frames and got["t"][-1] == 0
        assert all(len(got["values"][n]) == len(got["t"]) for n in CURVE_SHAPES)
        canvas = driver.find_element(By.ID, "curves")
        assert int(canvas.get_attribute("data-points")) > 0
        assert driver.execute_script(
            "const c = document.getElementById('curves');"
            "const p = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
            "let n = 0; for(let i = 0; i < p.length; i += 4) if(p[i+3] > 0 &&"
            " Math.max(p[i], p[i+1], p[i+2]) > 120) n++; return n;") > 100
        # The page redraws these controls as it polls: an element found a moment ago can be
        # stale, so each action is retried (by the deadline) until it has taken.
        retry = WebDriverWait(driver, 30, poll_frequency=0.05,
                              ignored_exceptions=(StaleElementReferenceException,))

        def untick(d):
            box = d.find_element(By.CSS_SELECTOR, "#curve-pick input[value='browInnerUp']")
            if box.is_selected():
                box.click()
            return not d.find_element(
                By.CSS_SELECTOR, "#curve-pick input[value='browInnerUp']").is_selected()

        def add(d):
            Select(d.find_element(By.ID, "curve-add")).select_by_value("cheekPuff")
            return True

        retry.until(untick)
        retry.until(add)
        wait.until(lambda d: d.execute_script(
            "const c = window.lastCurves; return c.shapes.includes('cheekPuff') &&"
            " !c.shapes.includes('browInnerUp') && c.values.cheekPuff.length > 0;"))
        # the participant page follows run 2, and shows the target face as a picture
        driver.switch_to.window(part)
        wait.until(ec.text_to_be_present_in_element((By.ID, "take"), "mini run 2"))
        wait.until(ec.text_to_be_present_in_element((By.ID, "prompt"), "Smile broadly"))
        wait.until(lambda d: d.execute_script(
            "const i = document.getElementById('face');"
            "return i.style.display === 'block' && i.complete && i.naturalWidth > 0;"))
        assert session.proc.wait(90) == 0, "".join(session.lines)[-2000:]
        # the page notices the session has ended
        wait.until(ec.text_to_be_present_in_element((By.ID, "conn"), "no connection"))
    finally:
        if driver is not None:
            driver.quit()
        session.close()
    q = json.loads((out / "quality.json").read_text())
    assert [(t["run"], t["status"]) for t in q["takes"]] == [(1, "redone"), (2, "ok")]
    assert (out / "sub-w01_ses-1_task-mini_run-2.h5").is_file()
    assert len(list((tmp_path / "cache").glob("imusic/session-faces/*.png"))) == 2


def test_the_terminal_panel_shows_prompt_health_and_takes() -> None:
    from rich.console import Console

    from imusic.session_screen import render

    state = {"protocol": "p", "participant": "x1", "phase": "recording", "take": "mini run 2",
             "step": "smile", "step_index": 3, "step_count": 3, "prompt": "Smile broadly",
             "waiting_continue": False, "remaining_s": 2.4,
             "health": {"device": "wear-1", "state": "streaming", "rate_hz": 99.5,
                        "nominal_hz": 100.0, "loss": 0.004, "lost": 3, "battery_pct": 87,
                        "imu_samples": 1234},
             "takes": [{"task": "mini", "run": 1, "status": "redo",
                        "reasons": ["no chin tap found"], "imu_lost_share": 0.0,
                        "face_lost_share": 0.01, "tap_found": False, "sync_confidence": 0.1,
                        "neutral_s": 2.0}]}
    console = Console(width=120, record=True, file=open(os.devnull, "w"))
    console.print(render(state))
    out = console.export_text()
    for part in ("Smile broadly", "2 s left", "99.5 Hz / 100", "0.4% (3)", "87%", "1234",
                 "mini run 1", "redo: no chin tap found", "step 3/3"):
        assert part in out, (part, out)


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(), c,
                                                                          max_size=4)))
def test_state_is_always_strict_json(value) -> None:
    text = json.dumps(clean(value), allow_nan=False)
    back = json.loads(text)
    if isinstance(value, float) and not math.isfinite(value):
        assert back is None


def test_web_post_bad_body_unknown_redo_and_unknown_curve_are_refused(tmp_path) -> None:
    import urllib.error
    import urllib.request

    from imusic.session_web import SessionWeb

    from imusic.capture.protocol import parse_protocol
    from imusic.capture.protocol_session import ProtocolRunner
    from imusic.session_state import ScreenState

    runner = ProtocolRunner(parse_protocol(PROTOCOL, "web3"), "w02", tmp_path)
    web = SessionWeb(runner, ScreenState(runner)).start()
    try:
        def post(path: str, body: bytes) -> tuple[int, dict]:
            req = urllib.request.Request(web.url + path, data=body, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    return r.status, json.loads(r.read())
            except urllib.error.HTTPError as err:
                return err.code, json.loads(err.read())

        assert post("/redo", b"{not json") == (400, {"ok": False, "error": "body is not JSON"})
        assert post("/redo", b'{"task": "nope"}')[0] == 400
        assert post("/redo", b'{"task": "mini"}') == (200, {"ok": True, "task": "mini"})
        assert post("/redo", b"{}")[0] == 400            # no take yet: nothing to redo
        assert runner.redo_queue.get_nowait() == "mini" and runner.redo_queue.empty()
        assert post("/continue", b"")[0] == 200 and runner.continue_event.is_set()
        assert post("/nothing", b"")[0] == 404
        with urllib.request.urlopen(web.url + "/state", timeout=10) as r:
            s = json.loads(r.read())
        assert s["phase"] == "idle" and s["health"]["state"] == "no IMU stream yet"
        with urllib.request.urlopen(web.url + "/curves", timeout=10) as r:
            c = json.loads(r.read())
        assert c["shapes"] == list(CURVE_SHAPES) and c["t"] == [] and c["kept"] == 0
        try:
            urllib.request.urlopen(web.url + "/curves?shapes=jawOpen,smile", timeout=10)
            raise AssertionError("an unknown shape was served")
        except urllib.error.HTTPError as err:
            assert err.code == 400 and "'smile' is not a Blendshapes channel" in json.loads(
                err.read())["error"]
    finally:
        web.close()
