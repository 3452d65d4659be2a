"""Dictionary indexing, the EBSD baseline, measured in the same MLflow run as OMNet.

After testing, on the datamodule's own arrays (the background-corrected patterns the net sees):

- the noisy test patterns are indexed by kikuchipy's dictionary indexing (normalised cross-correlation, NCC)
  against the run's dictionary (the one the net trained on, unless it trained on random orientations); logged:
  ``test/baseline/dictionary_indexing/mde`` (and ``mde_median``, ``mde_p90``, MSEAE per angle) and
  ``.../patterns_per_s``, beside the net's ``test/omnet/patterns_per_s`` on the same patterns and device (batch
  ``eval_batch_size``) and their ratio ``test/omnet/speedup``;
- the 9 real Ni patterns are indexed the same way (``keep_n=5``) and then refined by kikuchipy's
  ``refine_orientation`` against the master pattern with each pattern's own projection centre; the refined
  orientations are the reference, and ``test/real/omnet/mde`` and ``test/real/dictionary_indexing/mde`` are the
  disorientations to it (``test/real/refined_ncc`` its mean NCC score);
- each real pattern's simulated twin (:func:`real_twins`: its reference orientation, its own projection
  centre, noise-free and under the test set's noise model) goes through OMNet too
  (``test/real/twins/omnet/mde``, ``test/real/twins_measured/omnet/mde``): a net that finds the twins but not
  the real patterns fails on how real patterns look, not on the detector geometry.

The run gets ``ebsd_baselines.md`` (this run beside the published Table 6.1) and the CDF plot callback, if it
comes after this one, draws both methods.
"""

from __future__ import annotations

import time

import lightning.pytorch as pl
import numpy as np
import torch

from callbacks.mlflow_run import log_text_artifact, mlflow_logger
from materials.orientations import disorientation, mseae

PUBLISHED = {"dictionary_indexing": 0.652, "omnet_mae+mde": 0.548, "omnet_mae": 0.596}  # Table 6.1, degrees


def _ebsd_signal(patterns: torch.Tensor, quaternions: np.ndarray | None = None, phase=None, nav_shape=None):
    import kikuchipy as kp
    from orix.crystal_map import CrystalMap, PhaseList
    from orix.quaternion import Rotation

    data = patterns.numpy()
    if nav_shape is not None:
        data = data.reshape(*nav_shape, *data.shape[-2:])
    if quaternions is None:
        return kp.signals.EBSD(data)
    return kp.signals.EBSD(data, xmap=CrystalMap(rotations=Rotation(quaternions), phase_list=PhaseList(phase)))


def dictionary_index(patterns: torch.Tensor, dictionary: torch.Tensor, quaternions: np.ndarray, phase,
                     keep_n: int = 1, nav_shape=None):
    """kikuchipy dictionary indexing (NCC) of (n, H, W) patterns; returns the crystal map and seconds taken."""
    import contextlib
    import io

    signal = _ebsd_signal(patterns, nav_shape=nav_shape)
    dic = _ebsd_signal(dictionary, quaternions, phase)
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # its progress bar and report
        xmap = signal.dictionary_indexing(dic, metric="ncc", keep_n=keep_n)
    return xmap, time.perf_counter() - start


def net_quaternions(pl_module, patterns: torch.Tensor, batch: int) -> tuple[torch.Tensor, float]:
    """The net's orientations of uint8 [0, 1] patterns (n, H, W), and the seconds taken (after a warm-up), with
    the net's inference form (:meth:`OrientationRegressor.quaternion_predictor`)."""
    predict = pl_module.quaternion_predictor()
    out = []
    with torch.inference_mode():
        predict(patterns[:batch, None].to(pl_module.device).float() / 255)
        start = time.perf_counter()
        for first in range(0, len(patterns), batch):
            x = patterns[first:first + batch, None].to(pl_module.device).float() / 255
            out.append(predict(x).double().cpu())
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    return torch.cat(out), seconds


def disorientation_degrees(q_pred, q_true) -> np.ndarray:
    return torch.rad2deg(disorientation(torch.as_tensor(q_pred), torch.as_tensor(q_true))).numpy()


def real_twins(dm, mp, detector, quaternions: np.ndarray, seed: int = 0) -> dict[str, torch.Tensor]:
    """Simulated twins of the real patterns, prepared like every pattern (uint8 [0, 1], (n, H, W)): each at its
    reference orientation (``quaternions``, (n, 4)) and with its own projection centre from ``detector``,
    ``ideal`` (kikuchipy's 8-bit projection) and ``measured`` (the test set's noise model, ``seed``)."""
    from kikuchipy.detectors import EBSDDetector

    from datamodules.ebsd import prepared
    from datamodules.simulate.ebsd import project

    pcs = np.asarray(detector.pc).reshape(-1, 3)  # one detector, a PC per pattern: kikuchipy projects them at once
    ideal = project(mp, EBSDDetector(shape=tuple(detector.shape), pc=pcs, tilt=detector.tilt,
                                     sample_tilt=detector.sample_tilt, binning=detector.binning,
                                     px_size=detector.px_size), quaternions, dm.spec.energy)
    measured = dm.spec.noise.measure(torch.from_numpy(ideal), float(pcs[:, 0].mean()),
                                     torch.Generator().manual_seed(seed)).numpy()
    return {"ideal": prepared(ideal), "measured": prepared(measured)}


class DictionaryIndexingBaseline(pl.Callback):
    """kikuchipy dictionary indexing on the same test patterns, and the real-pattern reference (module doc).

    Args:
        real_patterns: also index and refine kikuchipy's 9 real Ni patterns.
        trust_region: ± degrees per Euler angle that refinement may move from the dictionary solution.
        net_trust_region: the same from OMNet's answer (wider: the net's answer is not on a dictionary grid).
    """

    def __init__(self, real_patterns: bool = True, trust_region: tuple[float, float, float] = (2.0, 2.0, 2.0),
                 net_trust_region: tuple[float, float, float] = (5.0, 5.0, 5.0)):
        super().__init__()
        self.real_patterns, self.trust_region = real_patterns, list(trust_region)
        self.net_trust_region = list(net_trust_region)
        self.real_table = ""

    def on_test_end(self, trainer, pl_module):
        dm = trainer.datamodule
        if trainer.global_rank != 0 or trainer.fast_dev_run or not getattr(dm, "arrays", None):
            return
        from datamodules.simulate.ebsd import master_pattern

        mp = master_pattern()
        dictionary, test = dm.arrays["dictionary"], dm.arrays["test"]
        q_dict, q_true = dictionary["quaternions"].numpy(), test["quaternions"]
        xmap, di_seconds = dictionary_index(test["patterns"], dictionary["patterns"], q_dict, mp.phase)
        q_di = torch.from_numpy(xmap.rotations.data.reshape(-1, 4))
        di = disorientation_degrees(q_di, q_true)
        q_net, net_seconds = net_quaternions(pl_module, test["patterns"], dm.hparams.eval_batch_size)
        n = len(q_true)
        metrics = {"test/baseline/dictionary_indexing/mde": float(di.mean()),
                   "test/baseline/dictionary_indexing/mde_median": float(np.median(di)),
                   "test/baseline/dictionary_indexing/mde_p90": float(np.quantile(di, 0.9)),
                   "test/baseline/dictionary_indexing/patterns_per_s": n / di_seconds,
                   "test/omnet/patterns_per_s": n / net_seconds, "test/omnet/speedup": di_seconds / net_seconds}
        per_angle = torch.rad2deg(mseae(q_di, q_true)).mean(0).tolist()
        metrics.update({f"test/baseline/dictionary_indexing/mseae_{a}": v
                        for a, v in zip(("phi1", "Phi", "phi2"), per_angle)})
        pl_module.baseline_disorientations = {f"dictionary indexing ({len(q_dict):,} patterns)": di}
        if self.real_patterns and dm.real is not None:
            metrics.update(self._real(dm, pl_module, mp, q_dict))
        logger = mlflow_logger(trainer)
        if logger is not None:
            logger.log_metrics(metrics)
        pl_module.baseline_metrics = metrics
        log_text_artifact(trainer, self._table(trainer, metrics, len(q_dict), n) + (
            f"\nper real pattern, disorientation to the reference:\n\n{self.real_table}\n" if self.real_table else ""),
            "ebsd_baselines.md")

    def _real(self, dm, pl_module, mp, q_dict) -> dict[str, float]:
        """The real patterns: dictionary indexing refined (the reference), OMNet alone, and OMNet's answer refined
        (the start moved by at most ``net_trust_region``); wall times of both routes, a per-pattern table."""
        import contextlib
        import io

        from orix.crystal_map import CrystalMap
        from orix.quaternion import Rotation

        real = dm.real
        signal = _ebsd_signal(real["patterns"].float() / 255, nav_shape=real["nav_shape"])

        def refine(start, trust_region):
            began = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                out = signal.refine_orientation(start, real["detector"], mp, energy=dm.spec.energy,
                                                trust_region=list(trust_region))
            return out, time.perf_counter() - began

        xmap, di_seconds = dictionary_index(real["patterns"], dm.arrays["dictionary"]["patterns"], q_dict, mp.phase,
                                            keep_n=5, nav_shape=real["nav_shape"])
        refined, di_refine_seconds = refine(xmap, self.trust_region)
        began = time.perf_counter()
        q_net, _ = net_quaternions(pl_module, real["patterns"], len(real["patterns"]))
        net_seconds = time.perf_counter() - began
        start = CrystalMap(rotations=Rotation(q_net.numpy()), x=xmap.x, y=xmap.y, phase_list=xmap.phases.deepcopy())
        net_refined, net_refine_seconds = refine(start, self.net_trust_region)
        q_ref = torch.from_numpy(refined.rotations.data.reshape(-1, 4))
        q_di = torch.from_numpy(xmap.rotations.data.reshape(-1, 5, 4)[:, 0])
        net, di = disorientation_degrees(q_net, q_ref), disorientation_degrees(q_di, q_ref)
        net_ref = disorientation_degrees(net_refined.rotations.data.reshape(-1, 4), q_ref)
        twins = {name: disorientation_degrees(net_quaternions(pl_module, patterns, len(patterns))[0], q_ref)
                 for name, patterns in real_twins(dm, mp, real["detector"], q_ref.numpy()).items()}
        self.real_table = "\n".join(
            ["| pattern | OMNet (°) | OMNet + refinement (°) | dictionary indexing (°) | NCC: reference, OMNet + "
             "refinement | OMNet on its simulated twin: noise-free, measured (°) |", "|---|---|---|---|---|---|"]
            + [f"| {i} | {net[i]:.3f} | {net_ref[i]:.3f} | {di[i]:.3f} | {refined.scores[i]:.3f}, "
               f"{net_refined.scores[i]:.3f} | {twins['ideal'][i]:.3f}, {twins['measured'][i]:.3f} |"
               for i in range(len(net))])
        return {"test/real/twins/omnet/mde": float(twins["ideal"].mean()),
                "test/real/twins_measured/omnet/mde": float(twins["measured"].mean()),
                "test/real/omnet/mde": float(net.mean()), "test/real/omnet/mde_max": float(net.max()),
                "test/real/omnet_refined/mde": float(net_ref.mean()),
                "test/real/omnet_refined/mde_max": float(net_ref.max()),
                "test/real/omnet_refined/seconds": net_seconds + net_refine_seconds,
                "test/real/dictionary_indexing/mde": float(di.mean()),
                "test/real/dictionary_indexing_refined/seconds": di_seconds + di_refine_seconds,
                "test/real/refined_ncc": float(np.mean(refined.scores))}

    @staticmethod
    def _table(trainer, m: dict[str, float], n_dict: int, n_test: int) -> str:
        keys = ("mde", "mde_median", "mseae_phi1", "mseae_Phi", "mseae_phi2")
        c = trainer.callback_metrics
        net = {k: float(c[f"test/{k}"]) if f"test/{k}" in c else float("nan") for k in keys}
        di = {k: m[f"test/baseline/dictionary_indexing/{k}"] for k in keys}

        def row(name: str, v: dict[str, float], rate: float, published: str) -> str:
            return (f"| {name} | {v['mde']:.3f} | {v['mde_median']:.3f} | {v['mseae_phi1']:.3f}, "
                    f"{v['mseae_Phi']:.3f}, {v['mseae_phi2']:.3f} | {rate:.0f} | {published} |")

        text = "\n".join([f"| method | mean disorientation (°), {n_test} noisy test patterns | median (°) | "
                          "MSEAE φ1, Φ, φ2 (°) | patterns/s | published mean (°) |", "|---|---|---|---|---|---|",
                          row("OMNet (this run)", net, m["test/omnet/patterns_per_s"],
                              f"{PUBLISHED['omnet_mae+mde']} (MAE+MDE)"),
                          row("dictionary indexing, NCC (this run)", di,
                              m["test/baseline/dictionary_indexing/patterns_per_s"],
                              str(PUBLISHED["dictionary_indexing"]))])
        text += f"\n\ndictionary: {n_dict:,} simulated patterns (the net's training set); same device for both.\n"
        if "test/real/omnet/mde" in m:
            text += (f"\n9 real Ni patterns (kikuchipy nickel_ebsd_small), reference = dictionary indexing + "
                     f"refinement (mean NCC {m['test/real/refined_ncc']:.3f}): OMNet {m['test/real/omnet/mde']:.3f}° "
                     f"(max {m['test/real/omnet/mde_max']:.3f}°), OMNet + refinement "
                     f"{m['test/real/omnet_refined/mde']:.3f}° (max {m['test/real/omnet_refined/mde_max']:.3f}°), "
                     f"dictionary indexing before refinement {m['test/real/dictionary_indexing/mde']:.3f}°; OMNet on "
                     f"the patterns' simulated twins {m['test/real/twins/omnet/mde']:.3f}° noise-free, "
                     f"{m['test/real/twins_measured/omnet/mde']:.3f}° measured; wall time "
                     f"OMNet + refinement {m['test/real/omnet_refined/seconds']:.2f} s, dictionary indexing + "
                     f"refinement {m['test/real/dictionary_indexing_refined/seconds']:.2f} s\n")
        return text
