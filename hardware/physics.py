"""Sensor physics: what each IMU of a rig reads while the face moves.

``simulate(motion, rig)`` takes blendshape frames and a head pose trajectory (any frame rate,
even irregular) and returns, per site and at the device rate, specific force (m/s^2, gravity
included), angular rate (rad/s) and magnetic field (uT), each in the sensor's own frame,
optionally with the sensor error model and device clock of ``hardware.sensors``.

How (see TWIN.md):

1. Skin point and skin frame of every site at every motion frame from the deformed mesh
   (``hardware.expression.TwinFace``: ICT's deltas with the jaw on the mandible and the
   identity's own expression style; only the few vertices needed are computed); the board
   follows its skin patch with compliance (``hardware.board``); turned into the sensor frame
   by the site's mounting rotation (plus a random mounting error).
2. Composed with the head pose: sensor orientation ``R_ws = R_wh R_hs`` and position
   ``p_w = x_h + R_wh p_h`` at the motion frames.
3. Derivatives from smooth interpolation, not frame differences: a cubic spline through the
   world positions gives acceleration; a ``RotationSpline`` through the orientations gives
   the angular rate (in the body frame, which is what a gyroscope reads).
4. Specific force ``f = R_ws^T (a + g_up)``, rate ``w``, field ``m = R_ws^T B_world(p, t)``:
   the Earth's field plus the session's magnetic disturbances (``hardware.magnetics``).

``TwinConfig`` switches each of the realism terms of steps 1 and 4 (all on by default;
``TwinConfig.ideal()`` is rigid boards on ICT's shared deltas in a uniform field). Per-session
draws (board coupling, the room's magnetic sources) come from the simulation's ``seed``.

World frame = head frame at rest: +x the subject's left, +y up, +z forward; gravity -y.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from imusic.hardware.board import ComplianceConfig, comply, draw_coupling
from imusic.hardware.expression import PersonConfig, TwinFace
from imusic.hardware.face import FaceModel
from imusic.hardware.magnetics import DisturbanceConfig, MagneticScene
from imusic.hardware.motion import Motion
from imusic.hardware.placement import patch_normals, skin_frames_at_rest, skin_patch
from imusic.hardware.rig import Rig, load_rig
from imusic.hardware.sensors import (
    STANDARD_GRAVITY,
    DeviceClock,
    ErrorModel,
    corrupt,
    from_counts,
    part_spec,
    random_rotation_small,
    to_counts,
)

QUANTITIES = ("acc", "gyro", "mag")
MAX_RATE_HZ = 1000.0


@dataclass(frozen=True)
class MagneticField:
    """The world's magnetic field: total intensity (uT), inclination (deg, positive points
    down) and the heading of magnetic north in the world's horizontal plane (deg from +z
    toward +x)."""

    total_ut: float = 50.0
    inclination_deg: float = 60.0
    north_heading_deg: float = 0.0

    def vector(self) -> np.ndarray:
        """The field in world coordinates (uT)."""
        inc, hd = math.radians(self.inclination_deg), math.radians(self.north_heading_deg)
        north = np.array([math.sin(hd), 0.0, math.cos(hd)])
        down = np.array([0.0, -1.0, 0.0])
        return self.total_ut * (math.cos(inc) * north + math.sin(inc) * down)


@dataclass
class ImuSignals:
    """Simulated readings of a rig: ``(N, S, 3)`` arrays in each sensor's frame, SI units.

    ``t`` are the true sample instants on the motion's timeline (s); ``device_time_us`` the
    timestamps the device's own clock gives them. When quantised, ``acc/gyro/mag`` are exact
    multiples of ``scales[q]`` and ``counts(q)`` returns the int16 values a device sends.
    """

    rate_hz: float
    t: np.ndarray
    acc: np.ndarray
    gyro: np.ndarray
    mag: np.ndarray
    device_time_us: np.ndarray
    site_names: list[str]
    rig_id: str
    reference: str
    scales: dict[str, np.ndarray] = field(default_factory=dict)   # (S,) SI per count
    ranges: dict[str, np.ndarray] = field(default_factory=dict)   # (S,) full scale SI
    quantised: bool = False
    clock: DeviceClock | None = None
    mounting_error: np.ndarray | None = None                      # (S, 3, 3) applied

    @property
    def n_samples(self) -> int:
        """Number of samples."""
        return len(self.t)

    def counts(self, quantity: str) -> np.ndarray:
        """int16 ADC counts ``(N, S, 3)`` of ``acc``, ``gyro`` or ``mag``."""
        return to_counts(getattr(self, quantity), self.scales[quantity])

    def stacked(self) -> np.ndarray:
        """``(N, S, 9)``: acc, gyro, mag per site (the LSL channel order per site)."""
        return np.concatenate([self.acc, self.gyro, self.mag], axis=-1)


PATCH_RADIUS_M = 0.005
"""Radius of the skin patch under a sensor board: the board turns with this patch."""


@dataclass(frozen=True)
class TwinConfig:
    """What the twin models beyond rigid boards on ICT's deltas (TWIN.md; all on)."""

    person: bool = True
    """Each identity its own expression style (``hardware.expression.Person``)."""
    jaw_hinge: bool = True
    """jawOpen turns the chin skin with the mandible (``hardware.expression``)."""
    patch_normal: bool = True
    """A board's rest normal is its skin patch's mean normal (else its anchor triangle's)."""
    compliance: bool = True
    """Boards follow their skin patch partly and late (``hardware.board``)."""
    magnetic_disturbance: bool = True
    """A static and passing magnetic sources near the head (``hardware.magnetics``)."""
    person_cfg: PersonConfig = PersonConfig()
    """How much identities differ."""
    compliance_cfg: ComplianceConfig = ComplianceConfig()
    """Board coupling and lag."""
    disturbance_cfg: DisturbanceConfig = DisturbanceConfig()
    """The room's magnetic sources."""

    @classmethod
    def ideal(cls) -> "TwinConfig":
        """The twin before issue 13: rigid boards on ICT's shared deltas, uniform field."""
        return cls(False, False, False, False, False)

    def draws(self, seed: int) -> tuple[np.random.Generator, np.random.SeedSequence]:
        """Per-session generators: board coupling, magnetic scene (independent of the
        error model's draws)."""
        seq_coupling, seq_scene = np.random.SeedSequence([seed, 0x7E1A]).spawn(2)
        return np.random.default_rng(seq_coupling), seq_scene


def sensor_frames(motion: Motion, rig: Rig, identity: int | None = None,
                  mount_err: np.ndarray | None = None, twin: TwinConfig = TwinConfig(),
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """World positions ``(T, S, 3)`` (m) and world-from-sensor rotations ``(T, S, 3, 3)`` of
    every site at the motion's frames (no interpolation): the mesh-derived truth that the
    spline-interpolated signals follow. ``mount_err`` (S, 3, 3) rotates each chip on its
    mounting (default none); ``seed`` draws the session's board coupling.

    A board glued on the skin is rigid while the skin under it stretches: it takes the
    best-fit rotation (Kabsch) of the patch of skin vertices under it from rest to the
    current frame, which is steadier than one small triangle's frame (then, with
    ``twin.compliance``, partly and late). Its position is the anchor point on the deformed
    mesh.
    """
    from scipy.spatial.transform import Rotation

    rig.require_twin()
    face = FaceModel.load()
    skin = TwinFace(identity, twin.jaw_hinge, twin.person_cfg if twin.person else None)
    anchors = [s.anchor for s in rig.sites]
    patch_points = [skin_patch(a, PATCH_RADIUS_M) for a in anchors]
    rest = skin.rest
    normals = patch_normals(face, patch_points, rest) if twin.patch_normal else None
    skin0 = skin_frames_at_rest(face, anchors, identity, normals)            # (S, 3, 3)
    pos_h = skin.points(motion.blendshapes, anchors)                         # (T, S, 3)
    patches = [np.unique(face.triangles[[p.triangle for p in pp]].ravel())
               for pp in patch_points]
    first = np.cumsum([0] + [len(p) for p in patches[:-1]])
    verts = skin.vertices(motion.blendshapes, np.concatenate(patches))
    n_sites = rig.n_sites
    cov = np.empty((len(motion.t), n_sites, 3, 3))
    for s, (ids, k0) in enumerate(zip(patches, first)):
        q0 = rest[ids].astype(np.float64)
        q0 -= q0.mean(axis=0)
        q = verts[:, k0:k0 + len(ids)]
        q = q - q.mean(axis=1, keepdims=True)
        cov[:, s] = np.einsum("kc,tkd->tcd", q0, q)                          # sum q0 q^T
    u, _, vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(np.swapaxes(vt, -1, -2) @ np.swapaxes(u, -1, -2)))
    vt[..., 2, :] *= d[..., None]
    rot_patch = np.swapaxes(vt, -1, -2) @ np.swapaxes(u, -1, -2)             # rest -> now
    if twin.compliance:
        coupling = draw_coupling(twin.draws(seed)[0], n_sites, twin.compliance_cfg)
        rot_patch, pos_h = comply(motion.t, rot_patch, pos_h, coupling,
                                  twin.compliance_cfg.tau_s)
    mount = np.stack([s.mounting for s in rig.sites])                        # sensor -> skin
    if mount_err is not None:
        mount = mount @ mount_err
    rot_hs = rot_patch @ (skin0 @ mount)[None]                               # sensor -> head
    r_wh = Rotation.from_rotvec(motion.head_rotvec).as_matrix()              # (T, 3, 3)
    rot_ws = np.einsum("tij,tsjk->tsik", r_wh, rot_hs)
    pos_w = motion.head_position[:, None, :] + np.einsum("tij,tsj->tsi", r_wh, pos_h)
    return pos_w, rot_ws


def _orthonormalise(m: np.ndarray) -> np.ndarray:
    """Nearest rotations (SVD) to matrices that float32 vertex data left slightly off."""
    u, _, vt = np.linalg.svd(m)
    return u @ vt


def ideal_signals(motion: Motion, rig: Rig, t: np.ndarray, identity: int | None = None,
                  mount_err: np.ndarray | None = None, gravity: float = STANDARD_GRAVITY,
                  magnetic_field: MagneticField = MagneticField(),
                  twin: TwinConfig = TwinConfig(), seed: int = 0
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Error-free specific force, angular rate and field ``(N, S, 3)`` at true times ``t``
    (``twin`` and ``seed`` as in ``sensor_frames``; ``seed`` also draws the magnetic scene)."""
    from scipy.interpolate import CubicSpline
    from scipy.spatial.transform import Rotation, RotationSpline

    n_sites = rig.n_sites
    pos_w, rot_ws = sensor_frames(motion, rig, identity, mount_err, twin, seed)
    track = CubicSpline(motion.t, pos_w.reshape(len(motion.t), -1), axis=0)
    acc_w = track(t, 2).reshape(len(t), n_sites, 3)
    acc_w[..., 1] += gravity                          # specific force = a - g, g along -y
    b_w = np.broadcast_to(magnetic_field.vector(), (len(t), n_sites, 3))
    if twin.magnetic_disturbance:
        scene = MagneticScene.random(twin.draws(seed)[1], twin.disturbance_cfg)
        b_w = b_w + scene.field(track(t).reshape(len(t), n_sites, 3), t)
    acc = np.empty((len(t), n_sites, 3))
    gyro = np.empty_like(acc)
    mag = np.empty_like(acc)
    for s in range(n_sites):
        spline = RotationSpline(motion.t, Rotation.from_matrix(rot_ws[:, s]))
        r = spline(t).as_matrix()                    # world-from-sensor at t
        gyro[:, s] = spline(t, 1)                    # body-frame rate = gyro reading
        acc[:, s] = np.einsum("nji,nj->ni", r, acc_w[:, s])
        mag[:, s] = np.einsum("nji,nj->ni", r, b_w[:, s])   # R^T b for each sample
    return acc, gyro, mag


def simulate(motion: Motion, rig: Rig | str, rate_hz: float = 100.0,
             identity: int | None = None, seed: int = 0,
             errors: bool | ErrorModel = True, clock: DeviceClock | None = None,
             gravity: float = STANDARD_GRAVITY,
             magnetic_field: MagneticField = MagneticField(),
             twin: TwinConfig = TwinConfig()) -> ImuSignals:
    """Simulate the rig's IMUs for a motion.

    ``rate_hz`` is the device output rate (up to 1 kHz; the real device runs 100-400 Hz).
    ``identity`` picks one of the face model's 20 head shapes (None: the generic head).
    ``errors``: True for the full error model, False for ideal float signals on an ideal
    clock, or an ``ErrorModel`` to choose. ``clock``: the device clock (default: ideal when
    errors are off, ``DeviceClock.random(seed)`` when the model's ``clock`` is on).
    ``twin``: the realism terms (``TwinConfig``; ``seed`` draws their per-session parts).
    The same arguments give the same bytes.
    """
    if isinstance(rig, str):
        rig = load_rig(rig)
    rig.require_twin()
    if not 0 < rate_hz <= MAX_RATE_HZ:
        raise ValueError(f"rate_hz must be in (0, {MAX_RATE_HZ:g}], got {rate_hz}")
    model = ErrorModel() if errors is True else ErrorModel.none() if errors is False else errors
    root = np.random.SeedSequence(seed)
    seq_mount, seq_err = root.spawn(2)
    if clock is None:
        clock = DeviceClock.random(seed) if model.clock else DeviceClock()
    n_sites = rig.n_sites
    rng_mount = np.random.default_rng(seq_mount)
    mount_err = np.stack([random_rotation_small(rng_mount, model.mounting_deg)
                          if model.mounting_deg > 0 else np.eye(3) for _ in range(n_sites)])

    t0, t1 = float(motion.t[0]), float(motion.t[-1])
    n = int(math.floor((t1 - t0) * rate_hz * (1.0 + clock.drift_ppm * 1e-6) + 1e-9)) + 1
    t, stamps = clock.sample_times(n, rate_hz, t0)
    keep = t <= t1 + 1e-12
    t, stamps = t[keep], stamps[keep]

    ideal = ideal_signals(motion, rig, t, identity, mount_err, gravity, magnetic_field, twin,
                          seed)

    out: dict[str, np.ndarray] = {}
    scales: dict[str, np.ndarray] = {}
    ranges: dict[str, np.ndarray] = {}
    err_seqs = seq_err.spawn(n_sites * len(QUANTITIES))
    for qi, (q, x) in enumerate(zip(QUANTITIES, ideal)):
        specs = [part_spec(s.part, q) for s in rig.sites]
        rng_setting = rig.settings.get(q)
        scales[q] = np.array([sp.scale(rng_setting) for sp in specs])
        ranges[q] = np.array([sp.full_scale(rng_setting) for sp in specs])
        y = np.empty_like(x)
        for s, sp in enumerate(specs):
            rng = np.random.default_rng(err_seqs[qi * n_sites + s])
            y[:, s] = corrupt(x[:, s], sp, rate_hz, rng, model)
        if model.quantise:
            y = from_counts(to_counts(y, scales[q]), scales[q])
        out[q] = y
    return ImuSignals(rate_hz=float(rate_hz), t=t, acc=out["acc"], gyro=out["gyro"],
                      mag=out["mag"], device_time_us=stamps, site_names=rig.site_names,
                      rig_id=rig.id, reference=rig.reference, scales=scales, ranges=ranges,
                      quantised=model.quantise, clock=clock, mounting_error=mount_err)
