"""The ESP-IDF firmware cannot be compiled here (no Xtensa toolchain), so what it shares with
the rest of the project is checked from its sources: the rig tables against hardware/rigs,
the BLE UUIDs and UDP port against firmware_bridge, the sensor scales against the rig's range
settings, and the build file against the files on disk."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from imusic.firmware_bridge.transports import ble, udp
from imusic.hardware.rig import available_rigs, load_rig

MAIN = Path(__file__).resolve().parents[2] / "hardware" / "firmware" / "esp32s3" / "main"


def _rig_tables() -> dict[str, tuple[list[tuple[str, int, int]], int]]:
    """rig id -> ([(site, bus, channel)], tap_site) from board.c."""
    text = (MAIN / "board.c").read_text()
    out = {}
    for block in re.split(r"#(?:el)?if CONFIG_IMUSIC_RIG_", text)[1:]:
        sites = [(n, int(b), int(c)) for n, b, c in
                 re.findall(r'\{"(\w+)",\s*(\d+),\s*(\d+)\}', block)]
        m = re.search(r'board_rig = \{"(\w+)",[^,]+,\s*sites,\s*(\d+)\}', block)
        if m:
            out[m.group(1)] = (sites, int(m.group(2)))
    return out


def test_board_has_a_table_for_every_rig():
    assert set(_rig_tables()) == set(available_rigs(twin=True))  # device rigs: not ours


@pytest.mark.parametrize("rig_id", available_rigs(twin=True))
def test_board_sites_follow_the_rig_order(rig_id):
    sites, tap_site = _rig_tables()[rig_id]
    rig = load_rig(rig_id)
    assert [s for s, _, _ in sites] == rig.site_names
    assert rig.site_names[tap_site] == "mentalis"  # the take-start tap sensor
    wiring = [(b, c) for _, b, c in sites]
    assert len(set(wiring)) == len(wiring), "two sites on one mux channel"
    assert all(b in (0, 1) and 0 <= c <= 7 for b, c in wiring)


def _uuid_from_init(name: str) -> str:
    text = (MAIN / "link_ble.c").read_text()
    m = re.search(name + r"\s*=\s*BLE_UUID128_INIT\(([^)]*)\)", text)
    assert m, f"{name} not found in link_ble.c"
    le = bytes(int(x, 16) for x in m.group(1).replace("\n", " ").split(","))
    h = le[::-1].hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def test_ble_uuids_match_the_host():
    assert _uuid_from_init("service_uuid") == ble.SERVICE_UUID
    assert _uuid_from_init("frames_uuid") == ble.FRAMES_UUID
    assert _uuid_from_init("commands_uuid") == ble.COMMANDS_UUID


def test_udp_port_matches_the_host():
    text = (MAIN / "Kconfig.projbuild").read_text()
    m = re.search(r"config IMUSIC_UDP_HOST_PORT.*?default (\d+)", text, re.S)
    assert m and int(m.group(1)) == udp.DEFAULT_PORT


def _define(path: Path, name: str) -> float:
    m = re.search(rf"#define {name}\s+([0-9.]+)f?", path.read_text())
    assert m, f"{name} not in {path.name}"
    return float(m.group(1))


@pytest.mark.parametrize("rig_id", available_rigs(twin=True))
def test_sensor_ranges_are_the_rig_settings(rig_id):
    settings = load_rig(rig_id).settings
    acc_g = _define(MAIN / "qmi8658.h", "QMI8658_ACC_RANGE_G")
    gyro_dps = _define(MAIN / "qmi8658.h", "QMI8658_GYRO_RANGE_DPS")
    mag_gauss = _define(MAIN / "qmc5883p.h", "QMC5883P_RANGE_GAUSS")
    assert (acc_g, gyro_dps, mag_gauss) == (settings["acc"], settings["gyro"], settings["mag"])
    # 16-bit outputs: LSB per unit = 2^15 / full scale (QMI8658 datasheet sensitivity table)
    assert math.isclose(_define(MAIN / "qmi8658.h", "QMI8658_ACC_LSB_PER_G"), 32768 / acc_g)
    assert math.isclose(_define(MAIN / "qmi8658.h", "QMI8658_GYRO_LSB_PER_DPS"), 32768 / gyro_dps)


def test_build_lists_exactly_the_sources_on_disk():
    text = (MAIN / "CMakeLists.txt").read_text()
    listed = re.findall(r'"([^"]+\.c)"', text)
    for src in listed:
        assert (MAIN / src).is_file(), f"CMakeLists.txt lists a missing file {src}"
    local = {p.name for p in MAIN.glob("*.c")}
    assert local == {s for s in listed if "/" not in s}
    portable = {p.name for p in (MAIN.parents[1] / "core").glob("*.c")}
    assert portable == {Path(s).name for s in listed if "/core/" in s}


def test_esp_idf_sources_pass_a_syntax_and_type_check():
    """gcc -fsyntax-only of every firmware source against tests/firmware/idf_stubs, our
    declarations of the ESP-IDF/NimBLE API subset it calls (-Wall -Wextra -Werror, as strict
    as ESP-IDF's own -Werror=all). Catches typos, wrong argument counts and types relative to
    those declarations; it is not an ESP-IDF build (that needs idf.py and the toolchain)."""
    import shutil
    import subprocess

    cc = shutil.which("gcc") or shutil.which("cc")
    assert cc, "no C compiler (cc) on PATH: install gcc"
    firmware = MAIN.parents[1]
    stubs = Path(__file__).resolve().parent / "idf_stubs"
    cmd = [cc, "-std=gnu11", "-fsyntax-only", "-Wall", "-Wextra", "-Werror",
           "-Wno-unused-parameter", f"-I{stubs}", f"-I{firmware / 'protocol'}",
           f"-I{firmware / 'core'}", f"-I{MAIN}"]
    failures = []
    for src in sorted(MAIN.glob("*.c")):
        proc = subprocess.run([*cmd, str(src)], capture_output=True, text=True, check=False)
        if proc.returncode:
            failures.append(f"{src.name}:\n{proc.stderr[-3000:]}")
    assert not failures, "\n".join(failures)


def test_assembly_guide_wiring_table_matches_the_board():
    """hardware/README.md's wiring table is what board.c wires (imusic11)."""
    text = (MAIN.parents[2] / "README.md").read_text()
    rows = re.findall(r"^\| (\d+) \| (\w+) \| [^|]+ \| \w+ \| (\d) \| (\d) \|", text, re.M)
    sites, _ = _rig_tables()["imusic11"]
    assert [(int(n), s, int(b), int(c)) for n, s, b, c in rows] == [
        (i + 1, s, b, c) for i, (s, b, c) in enumerate(sites)]
