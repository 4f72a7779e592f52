"""imusic record --rcs: LabRecorder's remote control lines over a real TCP socket."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pylsl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imusic.capture.rcs import RcsError, RcsState
from imusic.capture.session import SessionReader

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _connect(port: int, deadline_s: float = 30.0) -> socket.socket:
    end = time.monotonic() + deadline_s
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=10)
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.05)


def _reply(sock: socket.socket, line: str) -> str:
    sock.sendall(line.encode() + b"\n")
    data = b""
    while not (data.endswith(b"OK") or data.endswith(b"\n")):
        data += sock.recv(256)
    return data.decode()


def test_filename_fields_make_the_bids_name_and_templates_work() -> None:
    s = RcsState()
    s.update("filename {root:/data/study} {participant:P07} {session:2} {task:rest} {run:3}")
    assert s.path() == Path("/data/study/sub-P07_ses-2_task-rest_run-3.h5")
    s.update("filename {template:exp%n_%p_%b.xdf}")
    assert s.path() == Path("/data/study/exp3_P07_rest.h5")
    with pytest.raises(RcsError):
        s.update("filename {colour:red}")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_fuzzed_filename_lines_update_or_refuse(line) -> None:
    s = RcsState()
    try:
        s.update("filename " + line)
        s.path()
    except RcsError as err:
        assert "\n" not in str(err)


def test_a_lab_script_drives_a_recording_over_tcp(tmp_path) -> None:
    tag = uuid.uuid4().hex[:6]
    name = f"rcs-test-{tag}"
    info = pylsl.StreamInfo(name, "Blendshapes", 61, 60.0, pylsl.cf_float32, f"{name}-src")
    outlet = pylsl.StreamOutlet(info)
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "imusic", "record", "--rcs", str(port),
                             "--streams-by", name], env=env, stderr=subprocess.PIPE, text=True)
    try:
        sock = _connect(port)
        assert _reply(sock, "select all") == "OK"
        assert _reply(sock, "update") == "OK"
        assert _reply(sock, f"filename {{root:{tmp_path}}} {{participant:P01}} {{session:1}} "
                            "{task:rest} {run:1}") == "OK"
        assert _reply(sock, "start") == "OK"
        assert _reply(sock, "start").startswith("ERROR already recording")
        assert _reply(sock, "frobnicate").startswith("ERROR unknown command")
        target = tmp_path / "sub-P01_ses-1_task-rest_run-1.h5"
        deadline = time.monotonic() + 30
        sent = 0
        while time.monotonic() < deadline and sent < 300:   # until the recorder has consumers
            if outlet.have_consumers():
                outlet.push_sample(np.zeros(61, np.float32))
                sent += 1
            time.sleep(1 / 120)
        assert sent == 300
        assert _reply(sock, "stop") == "OK"
        sock.close()
        with SessionReader(target) as r:
            (key,) = r.keys_of_type("Blendshapes")
            assert len(r.stream(key).time_stamps) > 200
    finally:
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=30)[1]
    assert proc.returncode == 0, err
