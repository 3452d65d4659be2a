"""``make reproduce TABLE=search [TASK=irnet] [OPTS='--seeds 0 1 2']``: does the architecture search pay?

Trains the task's own net (the paper's architecture, e.g. IRNet-17) and the best trial of the task's
Optuna study (``make search TASK=…``) with the same training budget (the task config: epochs,
schedule), on the same split, for each seed, and tests both on the same test set. The table reports
parameters, test MAE (mean ± std over seeds), training wall time, and what the search cost: its
trials by state and their wall time, read back from the study's RDB. Cells are MLflow runs nested
under the reproduction's parent run, so a rerun resumes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from cli.configs import task_configs
from cli.reproduce.cells import mean_std
import optuna
import yaml


def load_study(opts: argparse.Namespace) -> optuna.Study:
    name = opts.study or opts.task
    try:
        study = optuna.load_study(study_name=name, storage=opts.storage)
    except KeyError:
        raise SystemExit(f"no Optuna study {name!r} in {opts.storage}: run `make search TASK={opts.task}` first") from None
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
        raise SystemExit(f"study {name!r} in {opts.storage} has no completed trial yet: run `make search TASK={opts.task}`")
    return study


def best_config(study: optuna.Study) -> dict:
    from cli.search_spaces import as_config

    return as_config(study.best_trial.user_attrs["overrides"])


def key_parts(opts: argparse.Namespace, extra: list[str]) -> list[str]:
    """What identifies this reproduction: task, study, the best trial's config, seeds, options."""
    study = load_study(opts)
    return [opts.task, study.study_name, opts.storage, yaml.safe_dump(best_config(study)),
            *map(str, opts.seeds), *extra]


def search_cost(study: optuna.Study) -> tuple[dict[str, int], float]:
    """Trials by state and the summed wall time of the completed and pruned ones (hours; a failed
    trial's span may include the time before its lost worker was noticed, so it is not counted)."""
    states: dict[str, int] = {}
    seconds = 0.0
    counted = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    for t in study.trials:
        states[t.state.name] = states.get(t.state.name, 0) + 1
        if t.state in counted and t.datetime_start and t.datetime_complete:
            seconds += (t.datetime_complete - t.datetime_start).total_seconds()
    return states, seconds / 3600


def reference_line(study: optuna.Study) -> list[str]:
    """Where the task's own net (``make search REFERENCE=1``) ranked among the study's completed trials."""
    done = sorted((t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE), key=lambda t: t.value,
                  reverse=study.direction == optuna.study.StudyDirection.MAXIMIZE)
    ranks = [k for k, t in enumerate(done, 1) if "reference" in t.user_attrs]
    if not ranks:
        return []
    t = done[ranks[0] - 1]
    return [f"The task's own net ran in the study as trial {t.number} (`REFERENCE=1`): validation MAE "
            f"{t.value:.4f}, rank {ranks[0]} of {len(done)} completed trials at the same per-trial budget."]


def search_pays(opts: argparse.Namespace, extra: list[str], cells) -> str:
    from cli.search import n_parameters

    study = load_study(opts)
    root = Path("outputs") / "reproduce" / f"search-{opts.task}"
    root.mkdir(parents=True, exist_ok=True)
    best_yaml = root / f"{study.study_name}-trial{study.best_trial.number}.yaml"
    best_yaml.write_text(yaml.safe_dump(best_config(study), sort_keys=False))
    arms = {"paper": [], "searched": ["--config", str(best_yaml)]}
    results: dict[str, list[dict[str, float]]] = {arm: [] for arm in arms}
    for arm, arm_args in arms.items():
        for seed in opts.seeds:
            results[arm].append(cells.train(f"{arm}-seed{seed}", task_configs(opts.task, opts.profile) + extra + arm_args
                                            + [f"--seed_everything={seed}"], root))
    states, hours = search_cost(study)
    budget = n_parameters(task_configs(opts.task, opts.profile) + extra)
    lines = [f"Search pays? {opts.task}: its own net vs the best trial of study {study.study_name!r}, same "
             f"training budget and split, seeds {', '.join(map(str, opts.seeds))}", "",
             "| model | parameters | test MAE | test RMSE | training wall time (min, mean) |", "|---|---|---|---|---|"]
    means = {}
    for arm, label in (("paper", f"{opts.task} as published (task config)"),
                       ("searched", f"search: trial {study.best_trial.number}")):
        mae = np.array([r["test/mae"] for r in results[arm]])
        rmse = np.array([r["test/rmse"] for r in results[arm]])
        means[arm] = (mae.mean(), int(results[arm][0]["n_parameters"]))
        minutes = np.mean([r["train_seconds"] for r in results[arm]]) / 60
        lines.append(f"| {label} | {means[arm][1]:,} | {mean_std(mae)} | {mean_std(rmse)} "
                     f"| {minutes:.1f} |")
        cells.client.log_metric(cells.parent_id, f"{arm}/test/mae_mean", float(mae.mean()))
    beats = means["searched"][0] < means["paper"][0] and means["searched"][1] <= budget
    trial_args = " or ".join(f"`{a}`" for a in study.user_attrs.get("trial_args", []) if a) or "none recorded"
    lines += ["", f"Search: {len(study.trials)} trials ({', '.join(f'{n} {s.lower()}' for s, n in sorted(states.items()))}), "
              f"{hours:.2f} h wall time of its completed and pruned trials (per trial: configs/search.yaml, then "
              f"the trials' options {trial_args}); best validation MAE {study.best_value:.4f}.", *reference_line(study),
              f"Best config: `{best_yaml}` (`make train TASK={opts.task} ARGS=\"--config {best_yaml}\"`).",
              f"Verdict: the searched net {'beats' if beats else 'does not beat'} the task's own net "
              f"({means['searched'][0]:.4f} vs {means['paper'][0]:.4f} test MAE, "
              f"{means['searched'][1]:,} vs {means['paper'][1]:,} parameters)."]
    cells.client.set_tag(cells.parent_id, "search_pays", str(beats))
    return "\n".join(lines) + "\n"
