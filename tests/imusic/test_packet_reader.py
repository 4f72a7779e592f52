"""PacketReader: an IMU stream read a whole device packet at a time (``imusic live --lsl``).

On real LSL: a packet whose second sample comes late is waited for, once the boundary is
learnt; a packet whose rest never comes costs at most the wait; before the boundary is known
nothing is waited for. A hypothesis fuzz over any arrival pattern checks that nothing is lost,
repeated or reordered, on an inlet object that speaks pylsl's two calls.
"""

from __future__ import annotations

import threading
import time

import pylsl
from hypothesis import given, settings
from hypothesis import strategies as st

from imusic.firmware_bridge import streams
from imusic.sources import PacketOptions, PacketReader, ReadOptions, open_inlet

PACKET = 2   # instants per device packet
SEQ0 = 41    # the first packet's seq: the boundary is learnt, not assumed to be a multiple


def _row(seq: int) -> list[float]:
    """One sample of the stream below: acc, gyro, device time, seq."""
    return [0.0, 0.0, 9.81, 0.0, 0.0, 0.0, 10_000.0 * seq, float(seq)]


def _stream(name: str) -> tuple[pylsl.StreamOutlet, object, streams.ImuLayout]:
    info = streams.imu_info(name, name, 100.0, ["s0"], has_gyro=True, has_mag=False,
                            meta={"device": {"instants_per_frame": PACKET}})
    outlet = pylsl.StreamOutlet(info)
    inlet = open_inlet(f"source_id='{name}'", "test IMU stream", "-")
    inlet.open_stream(5.0)
    deadline = time.monotonic() + 10.0
    while not outlet.have_consumers() and time.monotonic() < deadline:
        time.sleep(0.01)
    layout = streams.parse_imu(inlet.info(5.0))
    return outlet, inlet, layout


def _read_until(reader: PacketReader, n: int, deadline_s: float = 10.0) -> list[float]:
    """The seqs of reads until ``n`` samples came (a deadline, not a sleep)."""
    got: list[float] = []
    deadline = time.monotonic() + deadline_s
    while len(got) < n and time.monotonic() < deadline:
        rows, _ = reader.pull()
        got += [r[-1] for r in rows]
    return got


def test_the_stream_says_its_packet_size(unique_name):
    outlet, inlet, layout = _stream(unique_name)
    assert layout.instants_per_frame == PACKET and layout.seq == 7
    inlet.close_stream()
    del outlet


def test_a_packets_late_rest_is_waited_for_once_the_boundary_is_learnt(unique_name):
    outlet, inlet, layout = _stream(unique_name)
    options = PacketOptions(rest_wait_s=2.0, min_reads=3)
    reader = PacketReader(inlet, layout, options, ReadOptions(wait_s=0.2))
    seq = SEQ0
    # Learning: whole packets, one read each. A first sample alone is not waited for yet.
    outlet.push_chunk([_row(seq)], [pylsl.local_clock()])
    assert _read_until(reader, 1) == [seq]
    outlet.push_chunk([_row(seq + 1)], [pylsl.local_clock()])
    assert _read_until(reader, 1) == [seq + 1]
    seq += PACKET
    for _ in range(4):
        outlet.push_chunk([_row(seq), _row(seq + 1)], [pylsl.local_clock()] * 2)
        assert _read_until(reader, PACKET) == [seq, seq + 1]
        seq += PACKET
    assert reader.completed == 0 and reader.incomplete == 0
    # Learnt: a packet's first sample now waits for the second, pushed 0.2 s later.
    outlet.push_chunk([_row(seq)], [pylsl.local_clock()])
    late = threading.Timer(0.2, lambda: outlet.push_chunk([_row(seq + 1)],
                                                          [pylsl.local_clock()]))
    late.start()
    t0 = time.monotonic()
    rows, _ = reader.pull()
    took = time.monotonic() - t0
    late.join()
    assert [r[-1] for r in rows] == [seq, seq + 1], rows
    assert took >= 0.15 and reader.completed == 1, (took, reader.completed)
    seq += PACKET
    # A rest that never comes costs the wait and no more; the sample is handed on.
    reader.options = PacketOptions(rest_wait_s=0.3, min_reads=3)
    outlet.push_chunk([_row(seq)], [pylsl.local_clock()])
    t0 = time.monotonic()
    got = _read_until(reader, 1)
    took = time.monotonic() - t0
    assert got == [seq] and reader.incomplete == 1
    assert 0.25 <= took < 2.0, took
    inlet.close_stream()


class _Arrivals:
    """An inlet whose samples arrive in the groups given: each read (``pull_sample``) that
    finds nothing lets the next group arrive, as a late rest of a packet would; past the last
    group it times out. Speaks pylsl's ``pull_sample`` and ``pull_chunk``."""

    def __init__(self, groups: list[list[int]]) -> None:
        self.groups = [list(g) for g in groups if g]
        self.ready: list[int] = []

    def arrive(self) -> None:
        if self.groups:
            self.ready += self.groups.pop(0)

    def pull_sample(self, timeout: float = 0.0) -> tuple[list | None, float | None]:
        if not self.ready:
            self.arrive()
        if not self.ready:
            return None, None
        s = self.ready.pop(0)
        return _row(s), float(s)

    def pull_chunk(self, timeout: float = 0.0, max_samples: int = 1024) -> tuple[list, list]:
        take, self.ready = self.ready[:max_samples], self.ready[max_samples:]
        return [_row(s) for s in take], [float(s) for s in take]


def _read_all(inlet: _Arrivals, reader: PacketReader, n: int) -> list[int]:
    """Every seq the reader reads until the inlet has nothing left."""
    got: list[int] = []
    for _ in range(4 * (n + len(inlet.groups)) + 4):
        completed, incomplete = reader.completed, reader.incomplete
        rows, ts = reader.pull()
        assert len(rows) == len(ts)
        got += [int(r[-1]) for r in rows]
        if reader.incomplete > incomplete:   # waited in vain: nothing more had come
            assert not inlet.ready and not inlet.groups
        if not rows and not inlet.groups and not inlet.ready:
            break
    return got


def _reader(inlet: _Arrivals, size: int) -> PacketReader:
    layout = streams.ImuLayout(name="f", source_id="f", rate_hz=100.0, labels=(), sites=(),
                               quantities=(), columns={}, time_us=6, seq=7, rig_id="",
                               reference="", instants_per_frame=size)
    return PacketReader(inlet, layout, PacketOptions(rest_wait_s=1.0, min_reads=2),
                        ReadOptions(wait_s=0.0))


@settings(max_examples=150, deadline=None)
@given(start=st.integers(0, 2**20), size=st.integers(1, 6), n=st.integers(0, 120),
       cuts=st.lists(st.integers(1, 7), max_size=60))
def test_fuzz_any_arrivals_are_read_once_in_order(start, size, n, cuts):
    """Whatever the groups the samples arrive in (even mostly split packets, which teach it a
    wrong boundary), every sample is read exactly once and in order, and a read that waited
    in vain had nothing more to get."""
    seqs = list(range(start, start + n))
    groups, i = [], 0
    for c in cuts:
        groups.append(seqs[i:i + c])
        i += c
    groups.append(seqs[i:])
    inlet = _Arrivals(groups)
    assert _read_all(inlet, _reader(inlet, size), n) == seqs


@settings(max_examples=100, deadline=None)
@given(start=st.integers(0, 2**20), size=st.integers(1, 6),
       packets=st.lists(st.integers(1, 4), max_size=40))
def test_fuzz_whole_packets_never_wait(start, size, packets):
    """Samples that arrive in whole packets (any number per group) are read without a wait."""
    groups, seq = [], start
    for k in packets:
        groups.append(list(range(seq, seq + k * size)))
        seq += k * size
    inlet = _Arrivals(groups)
    reader = _reader(inlet, size)
    assert _read_all(inlet, reader, seq - start) == list(range(start, seq))
    assert reader.completed == 0 and reader.incomplete == 0
