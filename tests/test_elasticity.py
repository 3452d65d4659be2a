"""The FFT elasticity solver against exact results: laminates, bounds, homogeneity, refinement, equilibrium."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from materials.bounds import hashin_shtrikman_c11, laminate_c11, reuss_c11, voigt_c11
from materials.elasticity import (UNIAXIAL_11, CompatibleProjection, SolverNotConverged, TwoPhaseElasticity,
                                  effective_c11, solve, stress)
from materials.microstructure import MicrostructureSampler


@pytest.mark.parametrize("contrast", [10.0, 50.0])
def test_laminates_match_the_exact_normal_and_in_plane_results(contrast):
    material = TwoPhaseElasticity(contrast=contrast)
    n, layers = 15, 4
    micro = torch.zeros(2, n, n, n)
    micro[0, :layers] = 1  # layers normal to x1, the loading axis
    micro[1, :, :layers] = 1  # layers normal to x2: x1 lies in them
    c11, _ = effective_c11(micro, material, tol=1e-8)
    f = layers / n
    exact = [laminate_c11(f, material, "normal"), laminate_c11(f, material, "in_plane")]
    assert np.allclose(c11.numpy(), exact, rtol=1e-6)  # the issue asks 0.5 %
    assert exact[0] < exact[1]
    # the laminates are the extreme microstructures: normal ≈ Reuss-like, in-plane ≈ Voigt-like
    assert reuss_c11(f, material) <= exact[0] + 1e-9 and exact[1] <= voigt_c11(f, material) + 1e-9


def test_homogeneous_elements_return_the_phase_stiffness_exactly():
    material = TwoPhaseElasticity(contrast=50)
    micro = torch.stack([torch.zeros(9, 9, 9), torch.ones(9, 9, 9)])
    c11, solution = effective_c11(micro, material)
    assert torch.allclose(c11, torch.tensor(material.c11(), dtype=c11.dtype), rtol=1e-12)
    assert torch.equal(solution.iterations, torch.zeros(2, dtype=torch.long))
    assert torch.allclose(solution.strain[:, 0], torch.ones_like(solution.strain[:, 0]))


def test_random_elements_lie_inside_the_hashin_shtrikman_bounds():
    material = TwoPhaseElasticity(contrast=50)
    draws = [MicrostructureSampler(size=25, volume_fraction=(f, f), correlation_length=(2.0, 2.0)).draw([i])
             for i, f in enumerate((0.3, 0.5, 0.7))]
    micro = torch.cat([d["micro"] for d in draws])
    fractions = torch.cat([d["volume_fraction"] for d in draws]).numpy()
    c11, _ = effective_c11(micro, material, tol=1e-6)
    lower, upper = hashin_shtrikman_c11(fractions, material)
    assert np.all(reuss_c11(fractions, material) < lower) and np.all(upper < voigt_c11(fractions, material))
    assert np.all((lower < c11.numpy()) & (c11.numpy() < upper)), (lower, c11, upper)


def test_c11_converges_as_the_same_microstructure_is_refined():
    material = TwoPhaseElasticity(contrast=10)
    coarse = MicrostructureSampler(size=7, volume_fraction=(0.5, 0.5), correlation_length=(1.0, 1.0)).draw([3])["micro"]
    values = []
    for s in (1, 3, 5, 7):  # every voxel split into s³: the geometry is unchanged
        fine = coarse.repeat_interleave(s, 1).repeat_interleave(s, 2).repeat_interleave(s, 3)
        values.append(effective_c11(fine, material, tol=1e-6)[0].item())
    steps = np.abs(np.diff(values))
    assert np.all(steps[1:] < steps[:-1]), values
    assert steps[-1] / values[-1] < 1e-3


def test_stress_is_in_equilibrium_to_the_solver_tolerance():
    material = TwoPhaseElasticity(contrast=50)
    micro = MicrostructureSampler(size=17).draw([0, 1])["micro"]
    project = CompatibleProjection((17, 17, 17), "cpu", torch.float64)
    (l0, l1), (m0, m1) = material.lame()
    imposed = stress(torch.tensor(UNIAXIAL_11, dtype=torch.float64).reshape(1, 6, 1, 1, 1).expand(2, 6, 17, 17, 17),
                     l0 + (l1 - l0) * micro.double(), m0 + (m1 - m0) * micro.double())  # C:E, the solver's scale
    for tol in (1e-4, 1e-7):
        solution = solve(micro, material, tol=tol)
        assert torch.all(solution.residual <= tol * 1.01)
        assert torch.all(project.divergence_ratio(solution.stress, imposed) <= solution.residual)
    unsolved = solve(micro, material, tol=1e-7, max_iter=1, raise_on_failure=False)
    assert torch.all(project.divergence_ratio(unsolved.stress, imposed) > 1e-3)  # the check can fail


def test_loading_axes_are_consistent_and_batches_are_independent():
    material = TwoPhaseElasticity(contrast=20)
    micro = MicrostructureSampler(size=11, anisotropic=True).draw([5, 6, 7])["micro"]
    c11_batch, _ = effective_c11(micro, material, tol=1e-9)
    c11_single = torch.cat([effective_c11(micro[i:i + 1], material, tol=1e-9)[0] for i in range(3)])
    assert torch.allclose(c11_batch, c11_single, rtol=1e-7)
    swapped = micro.permute(0, 2, 1, 3)  # x1 <-> x2: C2222 of the swapped element is C1111 of the original
    c22 = solve(swapped, material, (0.0, 1.0, 0.0, 0.0, 0.0, 0.0), tol=1e-9).mean_stress[:, 1]
    assert torch.allclose(c22, c11_batch, rtol=1e-6)


def test_bad_input_and_non_convergence_are_clear_errors():
    with pytest.raises(ValueError, match="contrast .* got 0"):
        TwoPhaseElasticity(contrast=0)
    with pytest.raises(ValueError, match="contrast .* got -5"):
        TwoPhaseElasticity(contrast=-5)
    micro = torch.zeros(1, 5, 5, 5)
    micro[0, 1, 2, 3] = 0.5
    with pytest.raises(ValueError, match=r"element 0 voxel \(1, 2, 3\) is 0.5"):
        effective_c11(micro, TwoPhaseElasticity())
    random = MicrostructureSampler(size=9).draw([0])["micro"]
    with pytest.raises(SolverNotConverged, match="relative residual .* > tol 1.0e-08") as info:
        solve(random, TwoPhaseElasticity(contrast=50), tol=1e-8, max_iter=3)
    assert info.value.residuals.shape == (1,) and info.value.residuals[0] > 1e-8


def test_float32_passes_the_same_physics_checks_at_the_datasets_tolerance():
    """The datasets' tolerance (1e-5) in float32: laminates exact to 1e-4, inside the Hashin-Shtrikman bounds,
    in equilibrium, and C11 within 1e-4 of float64 on random elements."""
    material = TwoPhaseElasticity(contrast=50.0)
    micro = torch.zeros(2, 15, 15, 15)
    micro[0, :4] = 1
    micro[1, :, :4] = 1
    c11, solution = effective_c11(micro, material, tol=1e-5, dtype=torch.float32)
    assert c11.dtype == torch.float32 and torch.all(solution.residual <= 1e-5 * 1.01)
    exact = [laminate_c11(4 / 15, material, "normal"), laminate_c11(4 / 15, material, "in_plane")]
    assert np.allclose(c11.numpy(), exact, rtol=1e-4)
    random = MicrostructureSampler(size=21, volume_fraction=(0.5, 0.5), correlation_length=(2.0, 2.0)).draw([0, 1])
    single, _ = effective_c11(random["micro"], material, tol=1e-5, dtype=torch.float32)
    double, _ = effective_c11(random["micro"], material, tol=1e-5)
    assert torch.allclose(single.double(), double, rtol=1e-4)
    lower, upper = hashin_shtrikman_c11(random["volume_fraction"].numpy(), material)
    assert np.all((lower < single.numpy()) & (single.numpy() < upper))


@pytest.mark.parametrize("shape", [(7, 8, 9), (6, 5, 4), (9, 9, 1)])
def test_the_preconditioner_norms_in_fourier_space_equal_the_real_space_ones(shape):
    """‖G τ‖² and ⟨G τ, Γ0 τ⟩ from τ's traction on the half spectrum equal the real-space inner products (odd,
    even and columnar grids), and Γ0 τ is the compatible strain whose reference stress has τ's traction."""
    from materials.elasticity import ReferenceGreenOperator, _dot

    tau = torch.randn(2, 6, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    project = CompatibleProjection(shape, "cpu", torch.float64)
    lam0, mu0 = 3.0, 2.0
    green = ReferenceGreenOperator(project, lam0, mu0)
    w = green.traction(torch.view_as_real(torch.fft.rfftn(tau, dim=(2, 3, 4))))
    nw = green.normal_part(w)
    residual, energy = green.residual_and_energy(w, nw)
    g_tau = project(tau)
    z = torch.fft.irfftn(torch.view_as_complex(green.strain(green.displacement(w, nw))), s=shape, dim=(2, 3, 4))
    assert torch.allclose(residual, _dot(g_tau, g_tau), rtol=1e-10)
    assert torch.allclose(energy, _dot(g_tau, z), rtol=1e-10)
    assert torch.allclose(project(z), z, atol=1e-12)  # compatible
    c0_z = stress(z, torch.full((2, *shape), lam0, dtype=torch.float64), torch.full((2, *shape), mu0, dtype=torch.float64))
    assert torch.allclose(project(c0_z), g_tau, atol=1e-10)  # G C0 Γ0 τ = G τ


def test_the_reference_medium_cuts_the_iterations():
    """Preconditioned by Γ0 of the geometric-mean medium: 29-30 iterations on these 15³ elements at contrast 50
    (the unpreconditioned CG took 37-39 for the same residual)."""
    micro = MicrostructureSampler(size=15).draw([0, 1, 2])["micro"]
    solution = solve(micro, TwoPhaseElasticity(contrast=50.0), tol=1e-5)
    assert torch.all(solution.residual <= 1e-5) and int(solution.iterations.max()) <= 32


def test_the_scipy_fft_of_passive_workers_equals_torchs(monkeypatch):
    """Labelling workers (passive OpenMP threads) transform with scipy, everything else with torch: the same
    numbers, on an odd and an even last axis."""
    import materials.elasticity as elasticity

    for shape in ((9, 8, 7), (6, 5, 8)):
        field = torch.randn(2, 6, *shape, dtype=torch.float64)
        expected = torch.fft.rfftn(field, dim=(-3, -2, -1))
        monkeypatch.setattr(elasticity, "SCIPY_FFT", True)
        hat = elasticity.rfftn3(field)
        assert torch.allclose(hat, expected, atol=1e-10)
        assert torch.allclose(elasticity.irfftn3(hat, shape), field, atol=1e-12)
        monkeypatch.setattr(elasticity, "SCIPY_FFT", False)
