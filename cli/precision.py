"""The training precision a run gets when its config leaves ``trainer.precision`` unset (null).

- a CUDA GPU: ``bf16-mixed`` where it multiplies bfloat16 in hardware (Ampere and later), else ``16-mixed``;
- a CPU with bfloat16 matrix instructions (Intel AMX or AVX512-BF16; ``amx_bf16`` / ``avx512_bf16`` in
  ``/proc/cpuinfo``): ``bf16-mixed``; ``make bench`` measures both rates (2 AVX512-BF16 cores without AMX:
  380 against 174 GFLOP/s for a 2048² product);
- anything else: ``32-true`` (emulated bfloat16 is slower than float32).

A run's config (``--trainer.precision=32-true``) always wins; the precision a run trained in is logged as
its MLflow parameter ``precision``. Regression tasks validate and test in float32 whatever the training
precision (:class:`lightning_modules.regression.PropertyRegressor`).
"""

from __future__ import annotations

from pathlib import Path

BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The feature flags of the first CPU listed in ``cpuinfo`` (empty where the file does not exist)."""
    try:
        with cpuinfo.open() as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_bf16_matmul(flags: set[str] | None = None) -> bool:
    """Does this CPU multiply bfloat16 matrices in hardware?"""
    flags = cpu_flags() if flags is None else flags
    return any(flag in flags for flag in BF16_CPU_FLAGS)


def hardware_precision(accelerator: str = "auto", flags: set[str] | None = None) -> str:
    """The Lightning precision string for a run on ``accelerator`` (``auto``, ``cpu``, ``gpu``/``cuda``)."""
    import torch

    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "16-mixed"
    if accelerator in ("auto", "cpu"):
        return "bf16-mixed" if cpu_has_bf16_matmul(flags) else "32-true"
    return "32-true"  # mps, tpu, ...: Lightning's own default
