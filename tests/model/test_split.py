"""Held-out sets by head shape (identity) and performer, chosen from the data: a subject name
that wears a held-out head shape again (id16-1) is held out with it."""

import numpy as np

from imusic.model.data import Recording, auto_holdouts, split


def _rec(subject, identity, take, performer, motion="livelink-face-take", n=100):
    return Recording(path=None, subject=subject, take=take, source="twin", rig_id="r",
                     features=np.zeros((n, 1), np.float32),
                     blendshapes=np.zeros((n, 52), np.float32), valid_imu=np.ones(n, bool),
                     valid_arkit=np.ones(n, bool),
                     attrs={"identity": identity, "performer": performer, "motion": motion})


def _data():
    recs = []
    for s in range(40):                       # 40 subjects wear the 20 head shapes twice
        ident = s % 20
        name = f"id{ident:02d}" if s < 20 else f"id{ident:02d}-{s // 20}"
        recs.append(_rec(name, ident, "rom", "alex", n=50))
        recs.append(_rec(name, ident, "procedural", "procedural", "procedural", n=300))
    return recs


def test_a_held_out_subject_holds_out_its_head_shape():
    recs = _data()
    sp = split(recs, holdout_subjects=["id16"])
    assert {r.subject for r in sp.subjects} == {"id16", "id16-1"}
    assert all(r.identity != "16" for r in sp.train)


def test_auto_holdouts_come_from_the_attributes():
    recs = _data()
    h = auto_holdouts(recs)
    assert h["holdout_identities"] == ["16", "17", "18", "19"]
    assert h["val_identities"] == ["14", "15"]
    assert h["holdout_performers"] == ["alex"]         # the performer with the fewest frames
    sp = split(recs, **h)
    train_ids = {r.identity for r in sp.train}
    assert not train_ids & {"14", "15", "16", "17", "18", "19"}
    assert {r.performer for r in sp.train} == {"procedural"}
    assert {r.subject for r in sp.subjects} >= {"id16", "id16-1"}
    assert {r.performer for r in sp.performers} == {"alex"}
    assert {r.identity for r in sp.performers} == {"16", "17", "18", "19"}
    assert {r.identity for r in sp.val} == {"14", "15"}
    assert all(r.performer == "procedural" for r in sp.val + sp.subjects)


def test_one_performer_is_never_held_out():
    recs = [r for r in _data() if r.performer == "alex"]
    assert auto_holdouts(recs)["holdout_performers"] == []
