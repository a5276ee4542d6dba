"""The numbers of a study report, as plain JSON-able dicts: best, top trials, baselines, pruning.

Everything here reads the study only; re-training lives in search.report.robustness.
"""

import math
import random
import statistics
import warnings

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.attrs import (
    BEST_EPOCH_ATTR,
    EPOCHS_RUN_ATTR,
    FAIL_REASON_ATTR,
    TRAIN_LOSS_ATTR,
)
from search.metrics import Metric, metric_for
from search.space import SearchSpace
from search.study import FINISHED, baseline_name

TOP_N = 5
# Complete trials below which the importance ranking is called not reliable yet. Measured on
# the linear task (2026-11-23): six 200-trial searches (seeds 0-5, default sampler and pruner,
# 83-103 complete trials each), PED-ANOVA on the first n complete trials of each. From 10 to 50
# complete trials only 3 or 4 of the 6 seeds put the same parameter first (at 10 to 20 it was
# dropout, l1 or patience as often as weight decay); from 60 on, 5 or 6 of 6 (weight decay).
MIN_RANKING_TRIALS = 60
# The ranking's stability: how often the top parameter stays first when the importances are
# computed again on random subsets of this share of the complete trials.
SUBSETS, SUBSET_SHARE = 20, 0.8


def space_from_settings(settings: dict) -> SearchSpace:
    return SearchSpace.from_dict(settings["space"])


def _finite(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def trial_row(trial: FrozenTrial, space: SearchSpace, metric: Metric) -> dict:
    """One trial as the report shows it; gaps are test/validation minus train (overfitting > 0)."""
    attrs = trial.user_attrs
    train_loss = _finite(attrs.get(TRAIN_LOSS_ATTR))
    val_loss = _finite(trial.value)
    test_loss = _finite(attrs.get(metric.test_loss_key))
    row = {
        "number": trial.number,
        "state": trial.state.name,
        "baseline": baseline_name(trial),
        "params": dict(trial.params),
        "regularizers": space.describe(trial.params) if trial.params else "",
        "val_loss": val_loss,
        metric.key: _finite(attrs.get(metric.key)),
        "train_loss": train_loss,
        "epochs_run": attrs.get(EPOCHS_RUN_ATTR),
        "best_epoch": attrs.get(BEST_EPOCH_ATTR),
        "val_gap": None,
        "test_gap": None,
    }
    if train_loss is not None and val_loss is not None:
        row["val_gap"] = val_loss - train_loss
    if train_loss is not None and test_loss is not None:
        row["test_gap"] = test_loss - train_loss
    if trial.state == TrialState.PRUNED:
        row["pruned_at_epoch"] = trial.last_step
    return row


def trial_counts(trials: list[FrozenTrial]) -> dict[str, int]:
    counts = {state.name.lower(): 0 for state in FINISHED}
    for trial in trials:
        if trial.state in FINISHED:
            counts[trial.state.name.lower()] += 1
    return counts


def _epochs_run(trial: FrozenTrial) -> int:
    # Every epoch reports its validation loss, so the curve's length stands in for a missing attr.
    return int(trial.user_attrs.get(EPOCHS_RUN_ATTR, len(trial.intermediate_values)))


def pruning_saving(trials: list[FrozenTrial], epochs: int) -> dict:
    """Epochs trained against what the complete and pruned trials would have cost unpruned.

    Early stopping saves epochs too; `pruned_epochs_saved` isolates the pruner's share. Failed
    trials are left out: a killed or interrupted one stopped for reasons of its own, and
    counting its untrained epochs as saved would flatter the pruner.
    """
    judged = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    run = sum(_epochs_run(t) for t in judged)
    unpruned = len(judged) * epochs
    pruned_saved = sum(epochs - _epochs_run(t) for t in judged if t.state == TrialState.PRUNED)
    return {
        "epochs_per_trial": epochs,
        "epochs_run": run,
        "epochs_unpruned": unpruned,
        "saving_percent": 100.0 * (1 - run / unpruned) if unpruned else 0.0,
        "pruned_epochs_saved": pruned_saved,
    }


def baseline_rows(
    trials: list[FrozenTrial], expected: list[str], space: SearchSpace, metric: Metric
) -> list[dict]:
    """Each baseline's trial, or why there is no number: pruned, failed, not run yet, missing."""
    by_name = {baseline_name(t): t for t in trials if baseline_name(t)}
    names = list(dict.fromkeys([*expected, *by_name]))
    rows = []
    for name in names:
        trial = by_name.get(name)
        if trial is None:
            rows.append({"baseline": name, "state": "MISSING", "status": "missing from the study"})
            continue
        row = trial_row(trial, space, metric)
        row["baseline"] = name
        if trial.state == TrialState.COMPLETE:
            row["status"] = "measured"
        elif trial.state == TrialState.PRUNED:
            row["status"] = f"pruned at epoch {trial.last_step}"
        elif trial.state == TrialState.FAIL:
            row["status"] = f"failed: {trial.user_attrs.get(FAIL_REASON_ATTR, 'unknown reason')}"
        else:
            row["status"] = "not run yet"
        rows.append(row)
    return rows


def _importances(complete: list[FrozenTrial]) -> dict[str, float]:
    """PED-ANOVA importances of these complete trials, most important first.

    PED-ANOVA is deterministic (the same trials give the same numbers, as a seeded evaluator
    would) and, unlike fANOVA, needs no scikit-learn. It reads complete trials only, so an
    in-memory study of them gives what the real study gives.
    """
    study = optuna.create_study(direction="minimize")
    study.add_trials(complete)
    with warnings.catch_warnings():  # "importances will be equal": said by the reliability line
        warnings.simplefilter("ignore")
        importances = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.PedAnovaImportanceEvaluator()
        )
    return {name: float(value) for name, value in importances.items()}


def param_importances(complete: list[FrozenTrial]) -> tuple[dict[str, float], str | None]:
    """PED-ANOVA importances, or an empty dict and the reason they cannot be computed."""
    try:
        return _importances(complete), None
    except (ValueError, RuntimeError) as error:
        return {}, str(error).splitlines()[0]


def ranking_reliability(complete: list[FrozenTrial], importances: dict[str, float]) -> dict:
    """Whether the importance ranking can be trusted yet, and how stable its top is.

    Below MIN_RANKING_TRIALS complete trials the ranking is not reliable. Above, the importances
    are computed again on SUBSETS random subsets (seeded, so a report is reproducible) and the
    share that keeps the same parameter on top is the ranking's stability.
    """
    reliability: dict = {"complete_trials": len(complete), "needed": MIN_RANKING_TRIALS}
    if len(complete) < MIN_RANKING_TRIALS or not importances:
        return reliability | {"reliable": False}
    top = next(iter(importances))
    rng = random.Random(0)
    size = round(SUBSET_SHARE * len(complete))
    kept = sum(
        next(iter(_importances(rng.sample(complete, size))), None) == top for _ in range(SUBSETS)
    )
    return reliability | {"reliable": True, "top": top, "top_kept": kept, "subsets": SUBSETS}


def param_effect(complete: list[FrozenTrial], param: str, metric: Metric) -> dict | None:
    """How far the test metric moves with one parameter: the mean metric of the better group
    minus the worse one, splitting numbers at their median and categories by value."""
    pairs = [
        (t.params[param], t.user_attrs[metric.key])
        for t in complete
        if param in t.params and _finite(t.user_attrs.get(metric.key)) is not None
    ]
    if len(pairs) < 2:
        return None
    if all(isinstance(value, int | float) for value, _ in pairs):
        median = statistics.median(value for value, _ in pairs)
        low = [m for value, m in pairs if value <= median]
        high = [m for value, m in pairs if value > median]
        groups = {f"{param} <= {median:.3g}": low, f"{param} > {median:.3g}": high}
    else:
        groups: dict[str, list[float]] = {}
        for value, m in pairs:
            groups.setdefault(f"{param} = {value}", []).append(m)
    means = {label: statistics.fmean(ms) for label, ms in groups.items() if ms}
    if len(means) < 2:
        return None
    ranked = sorted(means, key=means.get, reverse=metric.higher_is_better)
    best, worst = ranked[0], ranked[-1]
    return {
        "better": best,
        "worse": worst,
        "better_mean": means[best],
        "worse_mean": means[worst],
        "moved_by": abs(means[best] - means[worst]),
    }


def _complete(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The complete trials, lowest validation loss first."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    return sorted(complete, key=lambda t: t.value)


def finalists(trials: list[FrozenTrial], count: int) -> list[FrozenTrial]:
    """The `count` complete trials of lowest validation loss, one per configuration (a
    re-measured baseline is one configuration), best first."""
    chosen: list[FrozenTrial] = []
    for trial in _complete(trials):
        if len(chosen) == count:
            break
        if all(other.params != trial.params for other in chosen):
            chosen.append(trial)
    return chosen


def finalist_rows(study: optuna.Study, settings: dict, count: int) -> list[dict]:
    """finalists() of the study as trial rows."""
    space, metric = space_from_settings(settings), metric_for(settings)
    return [trial_row(t, space, metric) for t in finalists(study.get_trials(deepcopy=False), count)]


def name_best(report: dict, best: dict) -> None:
    """Make the trial row `best` the report's best, and measure every baseline against it."""
    key = report["metric"]["key"]
    report["best"] = best
    for row in report["baselines"]:
        value = row.get(key)
        row["best_minus_baseline"] = None if value is None else best[key] - value


def summarize(study: optuna.Study, settings: dict, expected_baselines: list[str]) -> dict:
    """All numbers the report prints, read from the study; its best is the trial of lowest
    validation loss. Raises ValueError with no complete trial."""
    space = space_from_settings(settings)
    metric = metric_for(settings)
    trials = study.get_trials(deepcopy=False)
    complete = _complete(trials)
    if not complete:
        raise ValueError(f"study {study.study_name!r} has no completed trial yet")
    baselines = baseline_rows(trials, expected_baselines, space, metric)
    importances, importance_error = param_importances(complete)
    reliability = ranking_reliability(complete, importances)
    # Below the reliable size, naming a most important parameter would be noise.
    top_param = next(iter(importances), None) if reliability["reliable"] else None
    report = {
        "study": study.study_name,
        "task": settings.get("task"),
        "settings": settings,
        "metric": {"key": metric.key, "higher_is_better": metric.higher_is_better},
        "counts": trial_counts(trials),
        "pruning": pruning_saving(trials, int(settings["epochs"])),
        "top": [trial_row(t, space, metric) for t in complete[:TOP_N]],
        "baselines": baselines,
        "importances": importances,
        "importance_error": importance_error,
        "importance_reliability": reliability,
        "top_param_effect": param_effect(complete, top_param, metric) if top_param else None,
    }
    name_best(report, trial_row(complete[0], space, metric))
    return report
