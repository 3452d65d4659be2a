"""Orientations checked against orix: conversions, the cubic group, disorientation and its gradients, MSEAE."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from orix.quaternion import Orientation, Rotation, symmetry

from materials.orientations import (closest_equivalent, cubic_symmetry, disorientation, euler_to_quaternion,
                                    matrix_to_quaternion, matrix_to_rotation_6d, mseae, quaternion_conjugate,
                                    quaternion_multiply, quaternion_to_euler, quaternion_to_matrix, random_quaternions,
                                    rotation_6d_to_matrix, to_fundamental_zone)

N_PAIRS = 100_000


def _axis_angle(axes: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    axes = axes / axes.norm(dim=-1, keepdim=True)
    return torch.cat([torch.cos(angles / 2)[:, None], torch.sin(angles / 2)[:, None] * axes], 1)


@pytest.fixture(scope="module")
def pairs():
    """100k pairs: 70k random, 20k within 1e-3 rad of each other, 5k symmetry equivalents of near-identical
    orientations, 5k at the cubic maximum (62.80°, a vertex of the fundamental zone)."""
    g = torch.Generator().manual_seed(0)
    q1 = random_quaternions(N_PAIRS, g)
    q2 = random_quaternions(N_PAIRS, g)
    near = _axis_angle(torch.randn(25_000, 3, generator=g, dtype=torch.float64),
                       torch.rand(25_000, generator=g, dtype=torch.float64) * 1e-3)
    q2[70_000:90_000] = quaternion_multiply(near[:20_000], q1[70_000:90_000])
    s = cubic_symmetry(torch.float64)[torch.randint(24, (5_000,), generator=g)]
    q2[90_000:95_000] = quaternion_multiply(s, quaternion_multiply(near[20_000:], q1[90_000:95_000]))
    t = math.sqrt(2) - 1
    vertex = _axis_angle(torch.tensor([[t, t, t * t]], dtype=torch.float64).expand(5_000, 3),
                         torch.full((5_000,), 2 * math.atan(math.sqrt(2 * t * t + t**4)), dtype=torch.float64))
    q2[95_000:] = quaternion_multiply(vertex, q1[95_000:])
    reference = Orientation(q1.numpy(), symmetry.Oh).angle_with(Orientation(q2.numpy(), symmetry.Oh), degrees=True)
    return q1, q2, reference


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_disorientation_matches_orix_on_100k_pairs(pairs, dtype):
    q1, q2, reference = pairs
    ours = torch.rad2deg(disorientation(q1.to(dtype), q2.to(dtype))).double().numpy()
    assert np.abs(ours - reference).max() < 1e-3
    assert reference[95_000:].min() > 62.79 and ours.max() == pytest.approx(62.80, abs=0.01)  # the cubic maximum
    assert reference[70_000:95_000].max() < 0.06  # near-identity pairs are really near
    assert np.abs(ours[90_000:95_000] - reference[90_000:95_000]).max() < 1e-3  # across a symmetry operator


def test_paper_arccos_form_agrees_away_from_its_clamp(pairs):
    q1, q2, reference = pairs
    ours = torch.rad2deg(disorientation(q1, q2, method="arccos", eps=1e-12)).numpy()
    assert np.abs(ours - reference).max() < 1e-3  # float64 with a tight clamp: everywhere
    ours32 = torch.rad2deg(disorientation(q1.float(), q2.float(), method="arccos")).double().numpy()
    far = reference > 1.0
    assert np.abs(ours32 - reference)[far].max() < 1e-3
    assert ours32[~far].min() > 0.05  # float32 clamp at 1 - 1e-7: no angle below 2·arccos(1 - 1e-7) ≈ 0.051°


@pytest.mark.parametrize("method", ["atan2", "arccos"])
def test_gradients_stay_finite_at_the_clamp(method):
    g = torch.Generator().manual_seed(1)
    q = random_quaternions(64, g).float()
    s = cubic_symmetry()[torch.arange(64) % 24]
    targets = torch.cat([q[:16], quaternion_multiply(s[:16], q[16:32]),  # identical and equivalent: dot = 1
                         random_quaternions(32, g).float()])
    pred = q.clone().requires_grad_()
    disorientation(pred, targets, method=method).sum().backward()
    assert torch.isfinite(pred.grad).all()
    euler = quaternion_to_euler(q.double()).requires_grad_()  # through the Euler-angle head's conversion too
    disorientation(euler_to_quaternion(euler), targets.double(), method=method).sum().backward()
    assert torch.isfinite(euler.grad).all()


def test_disorientation_gradient_is_correct():
    g = torch.Generator().manual_seed(2)
    q1, q2 = random_quaternions(8, g).requires_grad_(), random_quaternions(8, g)
    assert torch.autograd.gradcheck(lambda a: disorientation(a, q2), (q1,))


def test_cubic_symmetry_is_the_group_432():
    s = cubic_symmetry(torch.float64)
    assert s.shape == (24, 4)
    assert torch.allclose(s.norm(dim=1), torch.ones(24, dtype=torch.float64))

    def index(q):  # q and -q are the same rotation
        match = (q[..., None, :] * s).sum(-1).abs() > 1 - 1e-9
        assert (match.sum(-1) == 1).all(), "not in the set"
        return match.int().argmax(-1)

    assert sorted(index(s).tolist()) == list(range(24))  # 24 distinct rotations
    table = index(quaternion_multiply(s[:, None], s[None, :]))  # closure: a Cayley table
    assert all(sorted(row) == list(range(24)) for row in table.tolist())  # each row a permutation (Latin square)
    assert index(s[:1]).item() == 0 and (s[0] == torch.tensor([1.0, 0, 0, 0], dtype=torch.float64)).all()
    index(quaternion_conjugate(s))  # inverses inside
    orix_ops = {tuple(np.round(np.abs(q), 9)) for q in symmetry.O.data}
    assert {tuple(np.round(np.abs(q), 9)) for q in s.numpy()} == orix_ops
    angles = sorted(np.round(np.degrees(2 * np.arccos(np.clip(np.abs(s[:, 0].numpy()), 0, 1))), 6))
    assert angles == [0.0] + [90.0] * 6 + [120.0] * 8 + [180.0] * 9


def test_conversions_match_orix():
    rng = np.random.default_rng(3)
    euler = np.deg2rad(rng.uniform([0, 0, 0], [360, 180, 360], (5000, 3)))
    euler[:10, 1] = 0.0  # Φ = 0 and Φ = π: the degenerate cases
    euler[10:20, 1] = np.pi
    q_orix = Rotation.from_euler(euler).data
    q = euler_to_quaternion(torch.from_numpy(euler))
    assert np.abs(q.numpy() - q_orix).max() < 1e-12
    back = quaternion_to_euler(torch.from_numpy(q_orix)).numpy()
    orix_back = Rotation(q_orix).to_euler()
    diff = np.abs(back - orix_back)
    assert np.minimum(diff, 2 * np.pi - diff).max() < 1e-9
    m = quaternion_to_matrix(torch.from_numpy(q_orix))
    assert np.abs(m.numpy() - Rotation(q_orix).to_matrix()).max() < 1e-12
    assert np.abs(matrix_to_quaternion(m).numpy() - q_orix).max() < 1e-12
    assert torch.allclose(rotation_6d_to_matrix(matrix_to_rotation_6d(m)), m, atol=1e-12)
    fz = to_fundamental_zone(torch.from_numpy(q_orix)).numpy()
    orix_fz = Orientation(q_orix, symmetry.Oh).reduce().data
    assert np.abs(fz - np.where(orix_fz[:, :1] < 0, -orix_fz, orix_fz)).max() < 1e-12


def test_mseae_is_zero_for_equivalents_and_folds_periodic_differences():
    g = torch.Generator().manual_seed(4)
    q = to_fundamental_zone(random_quaternions(200, g))
    s = cubic_symmetry(torch.float64)[torch.arange(200) % 24]
    assert mseae(quaternion_multiply(s, q), q).max() < 1e-6  # an equivalent prediction has no error
    assert torch.allclose(closest_equivalent(quaternion_multiply(s, q), q), q, atol=1e-12)
    # φ1 off by 359° is 1° of error (Eq. 6.7-6.8), Φ off by 2°
    true = torch.tensor([[math.radians(0.5), math.radians(40), math.radians(10)]], dtype=torch.float64)
    pred = true + torch.tensor([[math.radians(359), math.radians(2), 0.0]], dtype=torch.float64)
    err = torch.rad2deg(mseae(euler_to_quaternion(pred), euler_to_quaternion(true)))
    assert torch.allclose(err, torch.tensor([[1.0, 2.0, 0.0]], dtype=torch.float64), atol=1e-6)


@pytest.mark.parametrize("representation", ["euler", "quaternion", "rot6d"])
def test_mde_loss_is_invariant_under_symmetry_equivalent_targets(representation):
    from lightning_modules.orientation import LOSSES
    from materials.orientations import REPRESENTATIONS

    rep = REPRESENTATIONS[representation]
    g = torch.Generator().manual_seed(5)
    q = to_fundamental_zone(random_quaternions(64, g))
    equivalent = quaternion_multiply(cubic_symmetry(torch.float64)[torch.randint(1, 24, (64,), generator=g)], q)
    noise = 0.5 * torch.randn(64, rep.size, generator=g, dtype=torch.float64)
    out = torch.tensor(rep.offset, dtype=torch.float64) + torch.tensor(rep.scale, dtype=torch.float64) * noise

    def loss(name, target_q):
        o = out.clone().requires_grad_()
        value = sum(term(o, rep.encode(target_q), rep.decode(o), target_q) for term in LOSSES[name])
        value.backward()
        return value.detach(), o.grad

    (mde, grad), (mde_eq, grad_eq) = loss("mde", q), loss("mde", equivalent)
    assert torch.allclose(mde, mde_eq, atol=1e-12) and torch.allclose(grad, grad_eq, atol=1e-12)
    # the hybrid differs only by its MAE term, which sees the representative the target is written in
    hybrid, hybrid_eq = loss("mae+mde", q)[0], loss("mae+mde", equivalent)[0]
    assert torch.allclose(hybrid - loss("mae", q)[0], hybrid_eq - loss("mae", equivalent)[0], atol=1e-12)
    assert not torch.allclose(hybrid, hybrid_eq)
