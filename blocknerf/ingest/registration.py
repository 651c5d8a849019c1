"""Geo-registration: a robust similarity from SfM camera centres to GPS positions in local ENU metres.

SfM recovers poses up to a similarity (scale, rotation, translation). With GPS on the photos, the
similarity that maps the camera centres onto the GPS positions (in the east-north-up frame at a geo
origin near the capture) puts the reconstruction into metres, north up, z up. GPS is noisy and
sometimes wrong by tens of metres, so the fit is RANSAC over minimal 3-point samples, then a
least-squares refit (Umeyama) on the inliers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from blocknerf.capture.geo import LLA, GeoFrame


@dataclass(frozen=True)
class Similarity:
    """``x -> scale * rotation @ x + translation``."""

    scale: float
    rotation: np.ndarray
    """(3, 3) proper rotation."""
    translation: np.ndarray
    """(3,)"""

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Map ``(N, 3)`` points."""
        return self.scale * np.asarray(points, dtype=np.float64) @ self.rotation.T + self.translation

    def apply_c2w(self, c2w: np.ndarray) -> np.ndarray:
        """Map ``(N, 4, 4)`` camera-to-world matrices (rotations stay orthonormal)."""
        out = np.array(c2w, dtype=np.float64, copy=True)
        out[:, :3, :3] = self.rotation @ out[:, :3, :3]
        out[:, :3, 3] = self.apply(out[:, :3, 3])
        return out

    def matrix(self) -> np.ndarray:
        """(4, 4) homogeneous form."""
        m = np.eye(4)
        m[:3, :3] = self.scale * self.rotation
        m[:3, 3] = self.translation
        return m

    def to_dict(self) -> dict:
        return {"scale": self.scale, "rotation": self.rotation.tolist(), "translation": self.translation.tolist()}

    @classmethod
    def from_dict(cls, doc: dict) -> Similarity:
        """The inverse of ``to_dict``."""
        return cls(float(doc["scale"]), np.asarray(doc["rotation"], dtype=np.float64).reshape(3, 3),
                   np.asarray(doc["translation"], dtype=np.float64).reshape(3))


@dataclass(frozen=True)
class GeoRegistration:
    """The result of registering a reconstruction to GPS."""

    geo_origin: LLA
    similarity: Similarity
    """SfM coordinates -> ENU metres at ``geo_origin``."""
    residuals_m: np.ndarray
    """(N,) distance between each mapped camera centre and its GPS position."""
    inliers: np.ndarray
    """(N,) bool: the positions the final fit used."""


def fit_similarity(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None) -> Similarity:
    """The least-squares similarity ``dst ~ s R src + t`` (Umeyama 1991) of ``(N, 3)`` point pairs, N >= 3."""
    src, dst = np.asarray(src, dtype=np.float64), np.asarray(dst, dtype=np.float64)
    w = np.ones(len(src)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    mu_s, mu_d = w @ src, w @ dst
    a, b = src - mu_s, dst - mu_d
    cov = (b * w[:, None]).T @ a
    u, d, vt = np.linalg.svd(cov)
    sign = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[2, 2] = -1.0
    rotation = u @ sign @ vt
    var_s = float(w @ np.sum(a * a, axis=1))
    scale = float(np.trace(np.diag(d) @ sign) / var_s) if var_s > 0 else 1.0
    return Similarity(scale, rotation, mu_d - scale * rotation @ mu_s)


def robust_similarity(
    src: np.ndarray, dst: np.ndarray, *, threshold: float | None = None, iterations: int = 500, seed: int = 0
) -> tuple[Similarity, np.ndarray]:
    """A similarity ``dst ~ s R src + t`` robust to outliers, and the inlier mask.

    RANSAC over 3-point samples; ``threshold`` (in ``dst`` units) defaults to 3x the median
    residual of the all-points fit, at least 1 % of the extent of ``dst``.
    """
    src, dst = np.asarray(src, dtype=np.float64), np.asarray(dst, dtype=np.float64)
    n = len(src)
    full = fit_similarity(src, dst)
    if n <= 3:
        return full, np.ones(n, dtype=bool)
    if threshold is None:
        extent = float(np.linalg.norm(dst.max(axis=0) - dst.min(axis=0)))
        threshold = max(3.0 * float(np.median(_residuals(full, src, dst))), 0.01 * extent, 1e-9)
    rng = np.random.default_rng(seed)
    best = np.ones(n, dtype=bool)
    best_count, best_cost = -1, np.inf
    for _ in range(iterations):
        sample = rng.choice(n, size=3, replace=False)
        if np.linalg.matrix_rank(src[sample] - src[sample].mean(axis=0), tol=1e-9) < 2:
            continue
        candidate = fit_similarity(src[sample], dst[sample])
        r = _residuals(candidate, src, dst)
        inliers = r < threshold
        count, cost = int(inliers.sum()), float(np.minimum(r, threshold).sum())
        if count > best_count or (count == best_count and cost < best_cost):
            best, best_count, best_cost = inliers, count, cost
    if best_count < 3:
        return full, np.ones(n, dtype=bool)
    for _ in range(3):  # refit on the inliers until the set settles
        fit = fit_similarity(src[best], dst[best])
        inliers = _residuals(fit, src, dst) < threshold
        if inliers.sum() < 3 or np.array_equal(inliers, best):
            break
        best = inliers
    return fit_similarity(src[best], dst[best]), best


def register_to_gps(centres: np.ndarray, gps: list[LLA], *, origin: LLA | None = None) -> GeoRegistration:
    """Fit SfM camera centres ``(N, 3)`` to their GPS positions, in ENU metres around ``origin``
    (default: the median GPS position, so coordinates stay small and float32-safe)."""
    lla = np.array([[g.lat, g.lon, g.alt] for g in gps], dtype=np.float64)
    if origin is None:
        med = np.median(lla, axis=0)
        origin = LLA(float(med[0]), float(med[1]), float(med[2]))
    enu = GeoFrame(origin).lla_to_enu(lla)
    similarity, inliers = robust_similarity(centres, enu)
    residuals = _residuals(similarity, centres, enu)
    return GeoRegistration(origin, similarity, residuals, inliers)


def placed_registration(similarity: Similarity, origin: LLA, centres: np.ndarray, gps: list[LLA]) -> GeoRegistration:
    """A given ``similarity`` (SfM -> ENU at ``origin``, e.g. that of an earlier registration) and
    how far it puts camera centres ``(N, 3)`` from their GPS positions; every position counts."""
    enu = GeoFrame(origin).lla_to_enu(np.array([[g.lat, g.lon, g.alt] for g in gps], dtype=np.float64))
    centres = np.asarray(centres, dtype=np.float64).reshape(-1, 3)
    return GeoRegistration(origin, similarity, _residuals(similarity, centres, enu), np.ones(len(centres), dtype=bool))


def up_alignment(c2w: np.ndarray) -> Similarity:
    """Without GPS: a rotation that turns the cameras' mean up vector (OpenGL +y) to +z and moves
    the mean camera centre to the origin, keeping the SfM scale (partition's ``spacing auto``
    works in any units)."""
    c2w = np.asarray(c2w, dtype=np.float64)
    up = c2w[:, :3, 1].mean(axis=0)
    up = up / max(np.linalg.norm(up), 1e-12)
    z = np.array([0.0, 0.0, 1.0])
    v, c = np.cross(up, z), float(up @ z)
    if np.linalg.norm(v) < 1e-12:
        rotation = np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0])
    else:
        vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
        rotation = np.eye(3) + vx + vx @ vx / (1.0 + c)
    centre = c2w[:, :3, 3].mean(axis=0)
    return Similarity(1.0, rotation, -rotation @ centre)


def _residuals(sim: Similarity, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    return np.linalg.norm(sim.apply(src) - dst, axis=1)


__all__ = ["GeoRegistration", "Similarity", "fit_similarity", "placed_registration", "register_to_gps", "robust_similarity", "up_alignment"]
