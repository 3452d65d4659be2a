"""Crystal orientations: Bunge Euler angles, unit quaternions, rotation matrices, cubic symmetry, disorientation.

Conventions are orix's (0.15; Rowenhorst et al., Modelling Simul. Mater. Sci. Eng. 23, 083501 (2015)):
an orientation is the passive rotation from the sample frame to the crystal frame ("lab2crystal"), Bunge
Euler angles (φ1, Φ, φ2) are Z-X-Z, quaternions are (w, x, y, z) with w ≥ 0, and the matrix of a
quaternion is orix's ``Rotation.to_matrix``. Crystal symmetry acts from the left: ``s_i ⊗ q`` are the
equivalents of ``q``. Everything is batched over leading dimensions, runs in PyTorch on any device and is
differentiable where a loss needs it.

Disorientation (diss. Eq. 6.4, in quaternion form): the smallest rotation angle between any two symmetry
equivalents of q1 and q2,

    θ = 2 · arccos(max_i |⟨s_i ⊗ q1, q2⟩|)  over the 24 proper rotations s_i of m-3m (point group 432),

which equals orix's ``Orientation.angle_with``. :func:`disorientation` evaluates it as 2·atan2(|v|, |w|)
of the selected symmetric misorientation (same value; exact to float32 rounding at small angles, where
arccos of a rounded dot product is off by up to 0.04°, and a gradient that is finite everywhere);
``method="arccos"`` is the paper's literal form, with the arccos argument clamped to ≤ 1 - eps so that its
gradient stays finite (Jha et al.: "an upper bound of 1 to the magnitude of all the values passed to arccos").
"""

from __future__ import annotations

import math
from typing import Literal

import torch

TAU = 2 * math.pi


def quaternion_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product a ⊗ b (rotate by b, then by a) of (..., 4) quaternions."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([aw * bw - ax * bx - ay * by - az * bz,
                        aw * bx + ax * bw + ay * bz - az * by,
                        aw * by - ax * bz + ay * bw + az * bx,
                        aw * bz + ax * by - ay * bx + az * bw], dim=-1)


def quaternion_conjugate(q: torch.Tensor) -> torch.Tensor:
    return q * q.new_tensor([1.0, -1.0, -1.0, -1.0])


def euler_to_quaternion(euler: torch.Tensor) -> torch.Tensor:
    """Bunge (φ1, Φ, φ2) in radians, (..., 3) → unit quaternions (..., 4) with w ≥ 0 (orix ``from_euler``)."""
    phi1, Phi, phi2 = euler.unbind(-1)
    sigma, delta = 0.5 * (phi1 + phi2), 0.5 * (phi1 - phi2)
    c, s = torch.cos(0.5 * Phi), torch.sin(0.5 * Phi)
    q = torch.stack([c * torch.cos(sigma), -s * torch.cos(delta), -s * torch.sin(delta), -c * torch.sin(sigma)], -1)
    return torch.where(q[..., :1] < 0, -q, q)


def quaternion_to_euler(q: torch.Tensor, eps: float = 1e-9) -> torch.Tensor:
    """Unit quaternions (..., 4) → Bunge (φ1, Φ, φ2) in [0, 2π) × [0, π] × [0, 2π) (orix ``to_euler``).

    At Φ = 0 (or π) only φ1 ± φ2 is defined; then φ2 = 0, as orix does.
    """
    w, x, y, z = q.unbind(-1)
    q_ad, q_bc = w * w + z * z, x * x + y * y
    chi = torch.sqrt(q_ad * q_bc)
    safe = torch.where(chi < eps, torch.ones_like(chi), chi)
    phi1 = torch.atan2((x * z - w * y) / safe, (-w * x - y * z) / safe)
    Phi = torch.atan2(2 * chi, q_ad - q_bc)
    phi2 = torch.atan2((w * y + x * z) / safe, (y * z - w * x) / safe)
    degenerate = chi < eps
    flat = q_bc < eps  # Φ = 0: rotation about z only
    phi1_deg = torch.where(flat, torch.atan2(-2 * w * z, w * w - z * z), torch.atan2(-2 * x * y, x * x - y * y))
    euler = torch.stack([torch.where(degenerate, phi1_deg, phi1),
                         torch.where(degenerate, math.pi * (~flat).to(q.dtype), Phi),
                         torch.where(degenerate, torch.zeros_like(phi2), phi2)], -1)
    euler = torch.where(euler.abs() < eps, torch.zeros_like(euler), euler)
    return torch.remainder(euler, TAU)


def quaternion_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """Unit quaternions (..., 4) → rotation matrices (..., 3, 3) (orix ``Rotation.to_matrix``)."""
    w, x, y, z = q.unbind(-1)
    qq = w * w - (x * x + y * y + z * z)
    rows = [qq + 2 * x * x, 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), qq + 2 * y * y, 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), qq + 2 * z * z]
    return torch.stack(rows, -1).reshape(*q.shape[:-1], 3, 3)


def matrix_to_quaternion(m: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (..., 3, 3) → unit quaternions (..., 4), w ≥ 0; differentiable (the best-conditioned
    of the four square-root branches is used, so no division by a vanishing component)."""
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = m.reshape(*m.shape[:-2], 9).unbind(-1)
    four = torch.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1)
    root = torch.sqrt(four.clamp_min(1e-12))  # 2|w|, 2|x|, 2|y|, 2|z|
    candidates = torch.stack([
        torch.stack([root[..., 0] ** 2, m21 - m12, m02 - m20, m10 - m01], -1),
        torch.stack([m21 - m12, root[..., 1] ** 2, m01 + m10, m02 + m20], -1),
        torch.stack([m02 - m20, m01 + m10, root[..., 2] ** 2, m12 + m21], -1),
        torch.stack([m10 - m01, m20 + m02, m21 + m12, root[..., 3] ** 2], -1),
    ], -2) / (2 * root[..., :, None].clamp_min(0.1))
    best = four.argmax(-1)
    q = torch.gather(candidates, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    q = q / q.norm(dim=-1, keepdim=True)
    return torch.where(q[..., :1] < 0, -q, q)


def euler_to_matrix(euler: torch.Tensor) -> torch.Tensor:
    return quaternion_to_matrix(euler_to_quaternion(euler))


def rotation_6d_to_matrix(x: torch.Tensor) -> torch.Tensor:
    """The continuous 6-D representation of Zhou et al. (CVPR 2019): two 3-vectors (the first two columns of
    the matrix), made orthonormal by Gram–Schmidt, (..., 6) → (..., 3, 3)."""
    a1, a2 = x[..., :3], x[..., 3:]
    b1 = a1 / a1.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    a2 = a2 - (b1 * a2).sum(-1, keepdim=True) * b1
    b2 = a2 / a2.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    return torch.stack([b1, b2, torch.cross(b1, b2, dim=-1)], dim=-1)


def matrix_to_rotation_6d(m: torch.Tensor) -> torch.Tensor:
    return torch.cat([m[..., :, 0], m[..., :, 1]], -1)


def cubic_symmetry(dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """The 24 proper rotations of the cube (point group 432, the rotations of m-3m) as (24, 4) quaternions:
    identity; 180° about <100> (3); ±90° about <100> (6); 180° about <110> (6); ±120° about <111> (8)."""
    h, r = 0.5, math.sqrt(0.5)
    ops = [(1, 0, 0, 0), (0, 1, 0, 0), (0, 0, 1, 0), (0, 0, 0, 1)]
    for axis in range(3):
        for sign in (1, -1):
            q = [r, 0, 0, 0]
            q[1 + axis] = sign * r
            ops.append(tuple(q))
    for i, j in ((1, 2), (1, 3), (2, 3)):
        for sign in (1, -1):
            q = [0, 0, 0, 0]
            q[i], q[j] = r, sign * r
            ops.append(tuple(q))
    ops += [(h, sx * h, sy * h, sz * h) for sx in (1, -1) for sy in (1, -1) for sz in (1, -1)]
    return torch.tensor(ops, dtype=dtype, device=device)


def _symmetric_misorientations(q1: torch.Tensor, q2: torch.Tensor, symmetry: torch.Tensor | None):
    """M = q2 ⊗ q1⁻¹ and its 24 dot products ⟨s_i, M⟩ = ⟨s_i ⊗ q1, q2⟩ (the w of s_i⁻¹ ⊗ M)."""
    q1, q2 = torch.broadcast_tensors(q1, q2)
    symmetry = cubic_symmetry(q1.dtype, q1.device) if symmetry is None else symmetry.to(q1)
    m = quaternion_multiply(q2, quaternion_conjugate(q1))
    return m, m @ symmetry.T, symmetry


DisorientationMethod = Literal["atan2", "arccos"]


def disorientation(q1: torch.Tensor, q2: torch.Tensor, symmetry: torch.Tensor | None = None,
                   method: DisorientationMethod = "atan2", eps: float = 1e-7) -> torch.Tensor:
    """Disorientation angle in radians of unit quaternions (..., 4) under ``symmetry`` (default cubic 432).

    ``method="atan2"`` (default): 2·atan2(|v|, |w|) of s_k⁻¹ ⊗ q2 ⊗ q1⁻¹ for the best k; ``"arccos"``: the
    paper's 2·arccos(min(max_i |⟨s_i q1, q2⟩|, 1 - eps)). Both have finite gradients everywhere.
    """
    m, dots, symmetry = _symmetric_misorientations(q1, q2, symmetry)
    if method == "arccos":
        return 2 * torch.arccos(dots.abs().amax(-1).clamp(max=1 - eps))
    if method != "atan2":
        raise ValueError(f"disorientation method must be 'atan2' or 'arccos', got {method!r}")
    best = dots.abs().argmax(-1)
    r = quaternion_multiply(quaternion_conjugate(symmetry[best]), m)
    vector = (r[..., 1:] ** 2).sum(-1).clamp_min(1e-30).sqrt()
    return 2 * torch.atan2(vector, r[..., 0].abs())


def closest_equivalent(q: torch.Tensor, reference: torch.Tensor, symmetry: torch.Tensor | None = None) -> torch.Tensor:
    """The symmetry equivalent s_k ⊗ q of ``q`` nearest to ``reference`` (w ≥ 0)."""
    _, dots, symmetry = _symmetric_misorientations(q, reference, symmetry)
    best = quaternion_multiply(symmetry[dots.abs().argmax(-1)], q)
    return torch.where(best[..., :1] < 0, -best, best)


def to_fundamental_zone(q: torch.Tensor, symmetry: torch.Tensor | None = None) -> torch.Tensor:
    """The equivalent of ``q`` closest to the identity (the Rodrigues fundamental zone; orix
    ``map_into_symmetry_reduced_zone``), w ≥ 0."""
    return closest_equivalent(q, torch.zeros_like(q) + q.new_tensor([1.0, 0, 0, 0]), symmetry)


def mseae(q_pred: torch.Tensor, q_true: torch.Tensor, symmetry: torch.Tensor | None = None) -> torch.Tensor:
    """Per-angle absolute errors (..., 3) in radians of Eq. 6.6–6.8: the Euler angles of the true orientation
    against those of the symmetry equivalent of the prediction with minimum disorientation, each difference
    taken modulo 2π and folded into [0, π]. Their mean over patterns is the MSEAE of Table 6.1."""
    equivalent = closest_equivalent(q_pred, q_true, symmetry)
    diff = torch.remainder((quaternion_to_euler(q_true) - quaternion_to_euler(equivalent)).abs(), TAU)
    return torch.where(diff <= math.pi, diff, TAU - diff)


def random_quaternions(n: int, generator: torch.Generator | None = None, dtype=torch.float64) -> torch.Tensor:
    """``n`` rotations uniform on SO(3) (normalised 4-D Gaussians), w ≥ 0."""
    q = torch.randn(n, 4, generator=generator, dtype=dtype)
    q = q / q.norm(dim=-1, keepdim=True)
    return torch.where(q[:, :1] < 0, -q, q)


class Representation:
    """How a net's outputs stand for an orientation: ``size`` numbers, ``encode`` (unit quaternions → the
    regression target), ``decode`` (outputs → unit quaternions, differentiable), and the affine ``offset`` +
    ``scale`` · (unit-scale activation) that places the outputs on the targets' range."""

    def __init__(self, name: str, size: int, encode, decode, offset: tuple[float, ...], scale: tuple[float, ...]):
        self.name, self.size, self.encode, self.decode = name, size, encode, decode
        self.offset, self.scale = offset, scale


def _normalised(q: torch.Tensor) -> torch.Tensor:
    return q / q.norm(dim=-1, keepdim=True).clamp_min(1e-8)


# Bunge angles of the m-3m fundamental zone: φ1, φ2 ∈ [0, 2π), Φ ∈ [0, 60.5°].
REPRESENTATIONS: dict[str, Representation] = {
    "euler": Representation("euler", 3, quaternion_to_euler, euler_to_quaternion,
                            (math.pi, math.pi / 4, math.pi), (math.pi, math.pi / 4, math.pi)),
    "quaternion": Representation("quaternion", 4, lambda q: q, _normalised, (0.9, 0, 0, 0), (0.1, 0.3, 0.3, 0.3)),
    "rot6d": Representation("rot6d", 6, lambda q: matrix_to_rotation_6d(quaternion_to_matrix(q)),
                            lambda x: matrix_to_quaternion(rotation_6d_to_matrix(x)), (0,) * 6, (1,) * 6),
}
