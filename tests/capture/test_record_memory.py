"""``imusic record``'s memory: the record path loads only what it uses.

A Python with numpy, h5py and pylsl imported is 40 MB resident; asyncio (and the ssl it
imports) added 6 MB, importlib.metadata (for the version written in the file) 1.4 MB, socket
(for the host name) 0.4 MB. The test
runs the real command (``imusic.cli.main``, a real session file, a real pylsl stream) in a
fresh interpreter and lists what it loaded (capture/FORMAT.md "Recorder memory")."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

from .test_record import REPO

pytestmark = pytest.mark.timeout(120)

HEAVY = ("asyncio", "ssl", "importlib.metadata", "email", "socket")
"""Modules the recorder does not use, 0.4 MB (socket) to 4 MB (ssl) of resident memory each."""

CODE = """
import json, sys, threading, time
import pylsl
from imusic.cli import main
info = pylsl.StreamInfo(sys.argv[2], "IMU", 3, 100, pylsl.cf_double64, sys.argv[2] + "-sid")
outlet = pylsl.StreamOutlet(info)
done = threading.Event()
def push():
    while not done.is_set():
        outlet.push_sample([1.0, 2.0, 3.0])
        time.sleep(0.01)
threading.Thread(target=push, daemon=True).start()
rc = main(["record", "-o", sys.argv[1], "--streams-by", sys.argv[2], "--require", "IMU",
           "--wait", "20", "--seconds", "0.5", "--quiet"])
done.set()
print(json.dumps({"rc": rc, "loaded": [m for m in %r if m in sys.modules]}))
""" % (HEAVY,)


def test_record_loads_no_asyncio_ssl_socket_or_package_metadata(tmp_path):
    name = f"mem-{uuid.uuid4().hex[:8]}"
    out = subprocess.run([sys.executable, "-c", CODE, str(tmp_path / "s.h5"), name], cwd=REPO,
                         capture_output=True, text=True, timeout=90)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["rc"] == 0, out.stderr[-2000:]
    assert res["loaded"] == [], f"the record path loaded {res['loaded']}"
    from imusic.capture.session import SessionReader

    with SessionReader(tmp_path / "s.h5") as r:
        assert len(r.stream(r.keys[0]).time_stamps) > 0
        from imusic import __version__

        assert r.h5.attrs["imusic_version"] == __version__
        import platform

        assert r.h5.attrs["host"] == platform.node() != ""
