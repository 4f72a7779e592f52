"""A runtime that falls behind drops frames instead of lagging (``poll(max_behind_s=...)``)."""

import numpy as np

from imusic.model.runtime import Runtime


def _still_face(n: int, sites: int, rate: float = 100.0, t0: float = 0.0):
    rng = np.random.default_rng(0)
    acc = np.zeros((n, sites, 3)) + [0.0, 0.0, 9.81] + rng.normal(0, 0.02, (n, sites, 3))
    gyro = rng.normal(0, 0.005, (n, sites, 3))
    mag = np.zeros((n, sites, 3)) + [20.0, 0.0, -40.0]
    return acc, gyro, mag, t0 + np.arange(n) / rate


def test_backlog_is_skipped_but_features_advance():
    rt = Runtime.from_checkpoint(None)
    acc, gyro, mag, t = _still_face(300, len(rt.sites))          # 3 s arrive at once
    rt.push(acc, gyro, mag, t)
    frames = rt.poll(max_behind_s=0.25)
    ticks = rt.n_ticks
    assert 170 <= ticks <= 181                                     # every 60 Hz tick was seen
    assert 10 <= len(frames) <= 17                                 # only the last 0.25 s made
    assert rt.skipped == ticks - len(frames)
    assert frames[-1].t > t[-1] - 0.25 - rt.delay_s - 1e-9
    # caught up: the next samples are processed frame by frame again
    acc, gyro, mag, t2 = _still_face(10, len(rt.sites), t0=t[-1] + 0.01)
    rt.push(acc, gyro, mag, t2)
    assert len(rt.poll(max_behind_s=0.25)) >= 5 and rt.skipped == ticks - len(frames)


def test_without_a_bound_every_tick_makes_a_frame():
    rt = Runtime.from_checkpoint(None)
    acc, gyro, mag, t = _still_face(120, len(rt.sites))
    rt.push(acc, gyro, mag, t)
    frames = rt.poll()
    assert len(frames) == rt.n_ticks and rt.skipped == 0
