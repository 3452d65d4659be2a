"""Periodic linear elasticity of two-phase voxel elements by FFT (Lippmann–Schwinger).

The labels of the homogenization and localization datasets (Yang et al.,
Comput. Mater. Sci. 151, 278 (2018); Acta Mater. 166, 335 (2019), who used
periodic finite elements) come from this solver. It is the Fourier–Galerkin
scheme of Moulinec & Suquet (Comput. Methods Appl. Mech. Eng. 157, 69 (1998))
solved by conjugate gradients as in Zeman et al. (J. Comput. Phys. 229, 8065
(2010)) and Vondřejc et al. (Comput. Math. Appl. 68, 156 (2014)), preconditioned
by the Green operator of an isotropic reference medium (:func:`solve`):

    find the fluctuation ε̃ (zero mean, compatible) with  G[C : (E + ε̃)] = 0,

where E is the imposed macroscopic strain and G the orthogonal projection onto
compatible zero-mean strain fields; in Fourier space, with n = ξ/|ξ| and
w = τ̂ n, G τ̂ = n⊗w + w⊗n − (n·w) n⊗n. ``G C`` is symmetric positive definite
on compatible fields, so CG converges in O(√κ) iterations, κ the spread of C's
eigenvalues; the preconditioner brings κ down to the phase contrast. The residual
G σ is the non-equilibrated part of the stress: at convergence ``ξ·σ̂(ξ) = 0``
for every ξ ≠ 0 to the tolerance, i.e. the discrete divergence vanishes.

Strains and stresses are 6-vectors (11, 22, 33, 23, 13, 12) holding tensor
components (not engineering shear); the inner product weights shears by 2.
Batched over elements, in PyTorch, on CPU or GPU. Units: GPa.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from materials.microstructure import check_microstructure

VOIGT_PAIRS = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))
WEIGHTS = (1.0, 1.0, 1.0, 2.0, 2.0, 2.0)  # Frobenius inner product of symmetric tensors in 6-vector form
UNIAXIAL_11 = (1.0, 0.0, 0.0, 0.0, 0.0, 0.0)


#: scipy's FFT threads get the cores only where torch's idle OpenMP threads sleep instead of spinning (the
#: policy is read once, when the process starts: datamodules.simulate.worker starts such a process)
SCIPY_FFT = os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE"


def _scipy_for(tensor: torch.Tensor) -> bool:
    """Whether :func:`rfftn3` / :func:`irfftn3` transform ``tensor`` with scipy (CPU, passive threads, no gradient)."""
    return SCIPY_FFT and tensor.device.type == "cpu" and not tensor.requires_grad


def rfftn3(field: torch.Tensor) -> torch.Tensor:
    """The real FFT over the last three axes. torch's, or on a CPU whose OpenMP threads are passive
    (:data:`SCIPY_FFT`) scipy's pocketfft with as many workers as torch has threads: 51-point axes are torch's
    (MKL's) slow case, 3× the time per point of 48 or 52, and there scipy takes 0.15 s of FFTs per 51³ element
    where torch takes 0.23–0.29 (``make bench-mve``, float32; in float64 both take 0.27). With torch's threads
    spinning, scipy loses what it gains (float64: 0.71 s per element against torch's 0.55)."""
    if not _scipy_for(field):
        return torch.fft.rfftn(field, dim=(-3, -2, -1))
    import scipy.fft

    return torch.from_numpy(scipy.fft.rfftn(field.numpy(), axes=(-3, -2, -1), workers=torch.get_num_threads()))


def irfftn3(spectrum: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """The inverse of :func:`rfftn3` onto a real grid of ``shape``."""
    if not _scipy_for(spectrum):
        return torch.fft.irfftn(spectrum, s=shape, dim=(-3, -2, -1))
    import scipy.fft

    return torch.from_numpy(scipy.fft.irfftn(spectrum.numpy(), s=shape, axes=(-3, -2, -1),
                                             workers=torch.get_num_threads()))


class SolverNotConverged(RuntimeError):
    """CG stopped at ``max_iter`` above the tolerance; carries each element's residual."""

    def __init__(self, residuals: torch.Tensor, tol: float, max_iter: int):
        worst = int(residuals.argmax())
        super().__init__(f"elasticity solver did not converge in {max_iter} iterations: relative residual "
                         f"{residuals.max().item():.3e} (element {worst} of the batch) > tol {tol:.1e}; "
                         f"raise max_iter or tol")
        self.residuals, self.tol, self.max_iter = residuals, tol, max_iter

    def __reduce__(self):  # raised in a worker process, re-raised in the caller
        return type(self), (self.residuals, self.tol, self.max_iter)


@dataclass(frozen=True)
class TwoPhaseElasticity:
    """Two isotropic phases; phase 1 (voxel = 1) is the hard one, ``contrast`` = E1 / E0.

    Defaults are Yang et al.'s: E1 = 120 GPa, ν = 0.3 in both phases, contrast 50.
    """

    young_hard: float = 120.0
    contrast: float = 50.0
    poisson_hard: float = 0.3
    poisson_soft: float = 0.3

    def __post_init__(self):
        if not self.contrast > 0:
            raise ValueError(f"contrast (E_hard / E_soft) must be > 0, got {self.contrast}")
        if not self.young_hard > 0:
            raise ValueError(f"young_hard must be > 0 GPa, got {self.young_hard}")
        for name in ("poisson_hard", "poisson_soft"):
            if not -1 < getattr(self, name) < 0.5:
                raise ValueError(f"{name} must lie in (-1, 0.5), got {getattr(self, name)}")

    def young(self) -> tuple[float, float]:
        return self.young_hard / self.contrast, self.young_hard

    def lame(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """(λ0, λ1), (μ0, μ1): phase 0 (soft) then phase 1 (hard)."""
        lam, mu = [], []
        for e, nu in zip(self.young(), (self.poisson_soft, self.poisson_hard)):
            lam.append(e * nu / ((1 + nu) * (1 - 2 * nu)))
            mu.append(e / (2 * (1 + nu)))
        return (lam[0], lam[1]), (mu[0], mu[1])

    def bulk_shear(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """(K0, K1), (G0, G1)."""
        (l0, l1), (m0, m1) = self.lame()
        return (l0 + 2 * m0 / 3, l1 + 2 * m1 / 3), (m0, m1)

    def c11(self) -> tuple[float, float]:
        """C1111 = λ + 2μ of each phase (the P-wave modulus)."""
        (l0, l1), (m0, m1) = self.lame()
        return l0 + 2 * m0, l1 + 2 * m1


def stress(strain: torch.Tensor, lam: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """σ = λ tr(ε) I + 2μ ε for (B, 6, ...) strains and (B, ...) moduli."""
    trace = strain[:, :3].sum(dim=1, keepdim=True)
    out = 2 * mu[:, None] * strain
    out[:, :3] += lam[:, None] * trace
    return out


ROWS = ((0, 5, 4), (5, 1, 3), (4, 3, 2))  # the 6-vector components of each row of a symmetric tensor


def traction(t: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """w = τ̂ n for (B, 6, ...) Fourier-space tensors and unit vectors n (3, ...): (B, 3, ...), accumulated in
    place (the solver's time is FFTs and passes over such fields)."""
    out = torch.empty((t.shape[0], 3, *t.shape[2:]), dtype=t.dtype, device=t.device)
    for i, (a, b, c) in enumerate(ROWS):
        torch.mul(t[:, a], n[0], out=out[:, i])
        out[:, i].addcmul_(t[:, b], n[1]).addcmul_(t[:, c], n[2])
    return out


def normal_part(w: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """n·w for (B, 3, ...) vectors: (B, 1, ...)."""
    nw = w[:, :1] * n[0]
    return nw.addcmul_(w[:, 1:2], n[1]).addcmul_(w[:, 2:3], n[2])


class CompatibleProjection:
    """The projection G onto compatible zero-mean strains, on an (N1, N2, N3) grid."""

    def __init__(self, shape: tuple[int, int, int], device, dtype):
        self.shape = shape
        freqs = [torch.fft.fftfreq(shape[0], device=device, dtype=dtype),
                 torch.fft.fftfreq(shape[1], device=device, dtype=dtype),
                 torch.fft.rfftfreq(shape[2], device=device, dtype=dtype)]
        xi = torch.stack(torch.meshgrid(*freqs, indexing="ij"))
        norm = xi.norm(dim=0)
        keep = norm > 0
        for axis, size in enumerate(shape):  # no Nyquist content on even grids: G = 0 there, like the mean
            if size % 2 == 0:
                keep &= xi[axis].abs() != 0.5  # rfftfreq puts the last axis's Nyquist at +0.5
        self.n = torch.where(keep, xi / norm.clamp_min(1e-30), torch.zeros_like(xi))
        self.nn = torch.stack([self.n[i] * self.n[j] for i, j in VOIGT_PAIRS])  # n_i n_j, (6, ...)

    def _apply_hat(self, t: torch.Tensor) -> torch.Tensor:
        n = self.n
        w = traction(t, n)
        nw = normal_part(w, n)[:, 0]
        out = torch.empty_like(t)
        for a, (i, j) in enumerate(VOIGT_PAIRS):  # n_i w_j + w_i n_j − (n·w) n_i n_j
            torch.mul(w[:, j], n[i], out=out[:, a])
            out[:, a].addcmul_(w[:, i], n[j]).addcmul_(nw, self.nn[a], value=-1)
        return out

    def __call__(self, field: torch.Tensor) -> torch.Tensor:
        return irfftn3(self._apply_hat(rfftn3(field)), self.shape)

    def divergence_ratio(self, sigma: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        """Per element ‖n·σ̂(ξ)‖ over ξ ≠ 0 (the divergence with |ξ| divided out) over ‖reference‖.

        Zero when the stress is in equilibrium; ``reference`` defaults to σ itself.
        """
        divergence = irfftn3(traction(rfftn3(sigma), self.n), self.shape)
        reference = sigma if reference is None else reference
        return (divergence**2).sum(dim=(1, 2, 3, 4)).sqrt() / _dot(reference, reference).sqrt()


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per element Σ_c w_c Σ_x a_c(x) b_c(x), shears weighted by 2; one pass, no (B, 6, N1, N2, N3) temporary."""
    per_component = torch.einsum("bcxyz,bcxyz->bc", a, b)
    return per_component @ torch.tensor(WEIGHTS, dtype=a.dtype, device=a.device)


@dataclass
class ElasticSolution:
    """Per element: local strain and stress (B, 6, N1, N2, N3), mean stress (B, 6), CG iterations, and the
    residual ‖G σ‖ / ‖C:E‖ of the returned field."""

    strain: torch.Tensor
    stress: torch.Tensor
    mean_stress: torch.Tensor
    iterations: torch.Tensor
    residual: torch.Tensor


class ReferenceGreenOperator:
    """Γ0 of an isotropic reference medium (λ0, μ0), the preconditioner of the solver's CG, in Fourier space.

    For a stress τ̂ with traction ŵ = τ̂ n it gives the compatible strain ε̂ = sym(n ⊗ û) with
    û = (ŵ − c (n·ŵ) n) / μ0, c = (λ0 + μ0) / (λ0 + 2μ0): the strain whose stress C0 ε̂ has the same
    non-equilibrated part as τ̂ (G C0 ε̂ = G τ̂). Only tractions and 3-vectors û are stored; complex
    fields are real pairs (last axis) so that products with the real n are real products.
    """

    def __init__(self, projection: CompatibleProjection, lam0: float, mu0: float):
        self.n = projection.n[..., None]  # (3, ..., 1)
        self.half_n = self.n * 0.5
        self.c, self.mu0 = (lam0 + mu0) / (lam0 + 2 * mu0), mu0
        shape = projection.shape
        self.size, self.nyquist = float(shape[0] * shape[1] * shape[2]), shape[2] % 2 == 0

    def traction(self, t: torch.Tensor) -> torch.Tensor:
        """ŵ = τ̂ n for (B, 6, ..., 2) Fourier tensors: (B, 3, ..., 2)."""
        return traction(t, self.n)

    def normal_part(self, w: torch.Tensor) -> torch.Tensor:
        """n·ŵ, (B, 1, ..., 2)."""
        return normal_part(w, self.n)

    def displacement(self, w: torch.Tensor, nw: torch.Tensor) -> torch.Tensor:
        """û = (ŵ − c (n·ŵ) n) / μ0."""
        return torch.mul(w, 1 / self.mu0).addcmul_(nw, self.n, value=-self.c / self.mu0)

    def strain(self, u: torch.Tensor) -> torch.Tensor:
        """sym(n ⊗ û) as (B, 6, ..., 2) in the solver's 6-vector order."""
        n, h = self.n, self.half_n
        out = torch.empty((u.shape[0], 6, *u.shape[2:]), dtype=u.dtype, device=u.device)
        for a, (i, j) in enumerate(VOIGT_PAIRS):
            if i == j:
                torch.mul(u[:, i], n[i], out=out[:, a])
            else:
                torch.mul(u[:, j], h[i], out=out[:, a]).addcmul_(u[:, i], h[j])
        return out

    def norm2(self, w: torch.Tensor) -> torch.Tensor:
        """Per element Σ_x |f(x)|² of the real fields whose half spectra are ``w`` (B, C, ..., 2): Parseval over
        the half spectrum counts every plane k3 twice except k3 = 0 (and the Nyquist plane of an even N3)."""
        def squares(t):
            return torch.linalg.vector_norm(t.reshape(t.shape[0], -1), dim=1) ** 2

        total = 2 * squares(w) - squares(w[..., 0, :])
        if self.nyquist:
            total = total - squares(w[..., -1, :])
        return total / self.size

    def residual_and_energy(self, w: torch.Tensor, nw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """‖G τ‖² (|G τ̂|² = 2|ŵ|² − |n·ŵ|² at each frequency) and ⟨G τ, Γ0 τ⟩ = (|ŵ|² − c|n·ŵ|²) / μ0."""
        ww, nn = self.norm2(w), self.norm2(nw)
        return 2 * ww - nn, (ww - self.c * nn) / self.mu0


def solve(micro: torch.Tensor, material: TwoPhaseElasticity, macro_strain=UNIAXIAL_11, tol: float = 1e-6,
          max_iter: int = 1000, dtype: torch.dtype = torch.float64, raise_on_failure: bool = True) -> ElasticSolution:
    """Equilibrium of each element under the macroscopic strain ``macro_strain`` (6-vector, tensor shears).

    Stops each element when ‖G σ‖ ≤ tol ‖C:E‖ (its non-equilibrated stress relative to the stress the
    imposed strain alone would give). With ``raise_on_failure`` an element left above ``tol`` raises
    :class:`SolverNotConverged` naming its residual; never a silent label.

    Conjugate gradients on G C, preconditioned by the Green operator Γ0 of an isotropic reference medium
    with the geometric-mean bulk and shear moduli of the phases: the preconditioned operator's spectrum is
    the range of C0⁻¹C, the phase contrast (50 at contrast 50 with equal Poisson ratios) instead of the
    spread of C's own eigenvalues (3K_hard / 2μ_soft, 162): on 51³ elements at contrast 50 and tolerance 1e-5,
    31 iterations where 41 were needed (``make bench-mve``). Directions and the solution live in Fourier space as 3-vectors
    (compatible strains are sym(n ⊗ û)); an iteration is 6 inverse and 6 forward FFTs, as before.
    """
    micro = check_microstructure(micro).to(dtype)
    batch, shape = micro.shape[0], tuple(micro.shape[1:])
    (l0, l1), (m0, m1) = material.lame()
    lam = l0 + (l1 - l0) * micro
    mu = m0 + (m1 - m0) * micro
    (k0, k1), _ = material.bulk_shear()
    bulk_ref, mu_ref = (k0 * k1) ** 0.5, (m0 * m1) ** 0.5
    project = CompatibleProjection(shape, micro.device, dtype)
    green = ReferenceGreenOperator(project, bulk_ref - 2 * mu_ref / 3, mu_ref)
    mean = torch.as_tensor(macro_strain, dtype=dtype, device=micro.device).reshape(1, 6, 1, 1, 1)
    macro = mean.expand(batch, 6, *shape)

    def fourier(field):  # (B, 6, N1, N2, N3) real -> (B, 6, N1, N2, N3 // 2 + 1, 2)
        return torch.view_as_real(rfftn3(field))

    def real(spectrum):
        return irfftn3(torch.view_as_complex(spectrum), shape)

    imposed = stress(macro, lam, mu)  # C:E, the scale of the stopping rule
    scale = _dot(imposed, imposed).sqrt().clamp_min(torch.finfo(dtype).tiny)
    w = -green.traction(fourier(imposed))  # traction of the residual stress −C(E + ε̃), ε̃ = 0
    nw = green.normal_part(w)
    u = green.displacement(w, nw)  # the preconditioned residual Γ0 r, as sym(n ⊗ u)
    rr, rz = green.residual_and_energy(w, nw)
    solution = torch.zeros_like(u)  # ε̃ = sym(n ⊗ solution)
    direction = u
    iterations = torch.zeros(batch, dtype=torch.long, device=micro.device)
    done = rr.clamp_min(0).sqrt() <= tol * scale
    tiny = torch.finfo(dtype).tiny
    for _ in range(max_iter):
        if bool(done.all()):
            break
        p = real(green.strain(direction))
        cp = stress(p, lam, mu)
        alpha = torch.where(done, torch.zeros_like(rz), rz / _dot(p, cp).clamp_min(tiny))
        alpha = alpha[:, None, None, None, None, None]
        solution.addcmul_(alpha, direction)
        w.addcmul_(alpha, green.traction(fourier(cp)), value=-1)
        nw = green.normal_part(w)
        rr, rz_new = green.residual_and_energy(w, nw)
        beta = torch.where(done, torch.zeros_like(rz), rz_new / rz.clamp_min(tiny))
        direction = green.displacement(w, nw).addcmul_(beta[:, None, None, None, None, None], direction)
        iterations += (~done).long()
        rz = rz_new
        done = done | (rr.clamp_min(0).sqrt() <= tol * scale)
    strain = macro + real(green.strain(solution))
    sigma = stress(strain, lam, mu)
    true_residual = project(sigma)  # recomputed from the final field, not the CG recursion
    relative = _dot(true_residual, true_residual).sqrt() / scale
    if raise_on_failure and not bool((relative <= tol * 1.01).all()):
        raise SolverNotConverged(relative.cpu(), tol, max_iter)
    return ElasticSolution(strain, sigma, sigma.mean(dim=(2, 3, 4)), iterations, relative)


def effective_c11(micro: torch.Tensor, material: TwoPhaseElasticity, **kwargs) -> tuple[torch.Tensor, ElasticSolution]:
    """C1111 of each element (GPa): the mean σ11 under a unit macroscopic ε11, other strains 0."""
    solution = solve(micro, material, UNIAXIAL_11, **kwargs)
    return solution.mean_stress[:, 0], solution
