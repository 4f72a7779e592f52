"""The emulator's on-device fusion (``imusic emulate --report orientation``): what a wearable
with on-chip fusion (the paper's ESP32, x-IMU3, Xsens DOT, BNO08x) does before it sends a
quaternion.

One imufusion AHRS per site runs on the twin's *own* quantised readings (counts × scale, as the
device's firmware would see them), at the device rate, sample by sample, in the order they are
sent. So the quaternion carries a real filter's errors: start-up convergence, gyro bias drift,
heading drift without a magnetometer, the tilt error skin accelerations cause. It is not the
twin's true orientation.

Output convention (the IMU contract, hardware/PROTOCOL.md): unit quaternion, scalar first, the
sensor-to-earth rotation in the device's own earth frame (imufusion's NWU: x north, y west, z
up; with no magnetometer "north" is wherever the filter started). The sign is kept continuous
(no flip to w ≥ 0), so hosts may interpolate between samples. ``to_counts`` makes the int16
Q14 values the wire carries.

    fusion = DeviceFusion(n_sites=12, rate_hz=100, use_mag=True)
    q = fusion.update(acc, gyro, mag)      # (n, S, 3) SI arrays -> (n, S, 4) float64
    counts = to_counts(q)                  # (n, S, 4) int16, 1.0 = 16384
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imusic.firmware_bridge.protocol import QUAT_SCALE

G = 9.80665
"""m/s² per g (imufusion takes acceleration in g and angular rate in deg/s)."""


@dataclass(frozen=True)
class DeviceFusionConfig:
    """Settings of the emulated device's AHRS (imufusion's, per site)."""

    gain: float = 0.5
    """Filter gain: how strongly gravity (and the field) pull the gyro integration."""
    acceleration_rejection_deg: float = 10.0
    """Accelerometer readings further than this from gravity are ignored (deg)."""
    magnetic_rejection_deg: float = 10.0
    """Magnetometer readings further than this from the field are ignored (deg)."""
    rejection_timeout_s: float = 5.0
    """After this long rejecting, the filter re-initialises from the accelerometer (s)."""
    gyroscope_range_dps: float = 2000.0
    """Rates above this count as gyro overrange (deg/s): far above what a face reaches."""


class DeviceFusion:
    """Per-site AHRS of one emulated device (see the module docstring). State carries over
    between ``update`` calls, so call it with consecutive samples only."""

    def __init__(self, n_sites: int, rate_hz: float, use_mag: bool,
                 config: DeviceFusionConfig | None = None) -> None:
        import imufusion

        self.config = cfg = config or DeviceFusionConfig()
        self.rate_hz = float(rate_hz)
        self.use_mag = bool(use_mag)
        self._ahrs = []
        for _ in range(int(n_sites)):
            ahrs = imufusion.Ahrs()
            ahrs.set_settings(imufusion.AhrsSettings(
                sample_rate=self.rate_hz, convention=imufusion.CONVENTION_NWU, gain=cfg.gain,
                gyroscope_range=cfg.gyroscope_range_dps,
                acceleration_rejection=cfg.acceleration_rejection_deg,
                magnetic_rejection=cfg.magnetic_rejection_deg,
                rejection_timeout=int(round(cfg.rejection_timeout_s * self.rate_hz))))
            ahrs.set_sample_period(1.0 / self.rate_hz)
            self._ahrs.append(ahrs)

    def update(self, acc: np.ndarray, gyro: np.ndarray, mag: np.ndarray | None) -> np.ndarray:
        """Run the filters over ``n`` consecutive instants: ``acc`` (n, S, 3) m/s², ``gyro``
        rad/s, ``mag`` µT (used when ``use_mag``). Returns (n, S, 4) unit quaternions w, x, y,
        z (sensor-to-earth)."""
        acc_g = np.asarray(acc, np.float64) / G
        gyro_d = np.degrees(np.asarray(gyro, np.float64))
        use_mag = self.use_mag and mag is not None
        mag_f = np.asarray(mag, np.float64) if use_mag else None
        n, s = acc_g.shape[:2]
        out = np.empty((n, s, 4))
        for j, ahrs in enumerate(self._ahrs):
            for i in range(n):
                if use_mag:
                    ahrs.update(gyro_d[i, j], acc_g[i, j], mag_f[i, j])
                else:
                    ahrs.update_no_magnetometer(gyro_d[i, j], acc_g[i, j])
                out[i, j] = ahrs.get_quaternion()
        return out


def to_counts(q: np.ndarray) -> np.ndarray:
    """int16 Q14 wire values (1.0 = 16384) of quaternions (..., 4), normalised first."""
    q = np.asarray(q, np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    return np.clip(np.rint(q / QUAT_SCALE), -16384, 16384).astype(np.int16)
