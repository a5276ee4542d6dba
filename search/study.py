"""Creating and resuming studies: sampler, pruner, stored settings and baselines."""

import copy
import json
import time
import warnings
from collections.abc import Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.attrs import (
    APPLIED_ATTR,
    BASELINE_ATTR,
    SETTINGS_ATTR,
    SOURCE_ATTR,
    START_DESIGN_ATTR,
)
from search.config import PRUNERS, SAMPLERS
from search.errors import UsageError
from search.pruning import HISTORY, PRUNED_VIEWS, PredictivePruner, SamplerView
from search.task import Task

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
STARTED = (*FINISHED, TrialState.RUNNING)
METRIC_NAME = "validation loss"  # what the objective returns, as the dashboard labels it
# Baselines as studies made before 2026-11-24 named them, when "seed" also meant the seed
# scripts' configuration; that is the "reference" configuration now.
_FORMER_BASELINE_NAMES = {
    "seed (dropout 0.25)": "reference (dropout 0.25)",
    "no regularization (seed)": "no regularization (reference)",
}


def baseline_name(trial: FrozenTrial) -> str | None:
    """The baseline `trial` measures (None for a searched trial), by its current name."""
    name = trial.user_attrs.get(BASELINE_ATTR)
    return _FORMER_BASELINE_NAMES.get(name, name)


def make_sampler(
    name: str,
    seed: int,
    pruned_as: str = "ranked-last",
    startup_trials: int = 10,
    hide_baselines: bool = False,
    history: int | None = HISTORY,
) -> optuna.samplers.BaseSampler:
    """The --sampler, shown pruned trials as --pruned-as says and, if it models the history
    (TPE, GP), at most `history` finished trials (search/pruning.py)."""
    if pruned_as not in PRUNED_VIEWS:
        raise UsageError(f"unknown --pruned-as {pruned_as!r}: choose one of {PRUNED_VIEWS}")
    if name == "tpe":
        sampler = optuna.samplers.TPESampler(
            seed=seed, multivariate=True, n_startup_trials=startup_trials
        )
    elif name == "random":
        sampler = optuna.samplers.RandomSampler(seed=seed)
    elif name == "cmaes":
        # CMA-ES handles only the numeric parameters; the activation is sampled at random.
        sampler = optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    elif name == "gp":
        sampler = optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup_trials)
    else:
        raise UsageError(f"unknown sampler {name!r}: choose one of {', '.join(SAMPLERS)}")
    if name not in ("tpe", "gp"):
        history = None  # random ignores the history; CMA-ES keeps its own state in it
    if pruned_as == "ranked-last" and not hide_baselines and history is None:
        return sampler
    baselines = "hidden" if hide_baselines else "seen"
    return SamplerView(sampler, pruned_as, baselines, history)


def make_pruner(name: str, epochs: int, warmup_epochs: int) -> optuna.pruners.BasePruner:
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=warmup_epochs)
    if name == "percentile":
        return optuna.pruners.PercentilePruner(
            25.0, n_startup_trials=5, n_warmup_steps=warmup_epochs
        )
    if name == "successive-halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=max(1, warmup_epochs))
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=max(1, warmup_epochs), max_resource=epochs
        )
    if name == "predictive":
        return PredictivePruner(n_warmup_steps=warmup_epochs)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise UsageError(f"unknown pruner {name!r}: choose one of {', '.join(PRUNERS)}")


def stored_settings(study: optuna.Study) -> dict:
    """The settings search.cifar, search.linear or search.run stored on `study`; refused if there
    are none."""
    settings = study.user_attrs.get(SETTINGS_ATTR)
    if settings is None:
        raise UsageError(
            f"study {study.study_name!r} has no regsearch settings: it was not made by "
            "search.cifar, search.linear or search.run"
        )
    return settings


def _normalized(settings: dict) -> dict:
    # Stored attrs come back from JSON: tuples become lists, so compare in that form.
    return json.loads(json.dumps(settings))


def _settings_mismatch(stored: dict, wanted: dict) -> str | None:
    return ", ".join(_differences(stored, wanted)) or None


def _differences(stored: dict, wanted: dict, prefix: str = "") -> list[str]:
    """The settings that differ, nested ones by their dotted name (space.dropout=...), so that
    a changed range reads as that range, not as the whole space."""
    diffs = []
    for key in sorted(set(stored) | set(wanted)):
        old, new = stored.get(key), wanted.get(key)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            diffs += _differences(old, new, f"{prefix}{key}.")
        else:
            diffs.append(f"{prefix}{key}={old!r} (now {new!r})")
    return diffs


def open_study(
    storage: optuna.storages.BaseStorage,
    study_name: str,
    task: Task,
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner,
    start_design: Sequence[dict] = (),
) -> optuna.Study:
    """Create the study with its settings, baselines and `start_design` (trials enqueued after
    the baselines, see SearchSpace.start_design), or resume it if the settings match.

    A study created with other settings is refused before anything is written to it: mixing
    trials of, say, 8 and 2 epochs would make every comparison in it meaningless.
    """
    settings = _normalized(task.settings)
    try:
        study = optuna.create_study(
            storage=storage,
            study_name=study_name,
            sampler=sampler,
            pruner=pruner,
            direction="minimize",
        )
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(
            storage=storage, study_name=study_name, sampler=sampler, pruner=pruner
        )
        stored = _wait_for_settings(study)
        if stored is not None:
            _check_source(study, task)
            mismatch = _settings_mismatch(stored, settings)
            if mismatch:
                raise UsageError(
                    f"study {study_name!r} was created with other settings: {mismatch}; "
                    "rerun with the study's settings or pick a new --study-name"
                ) from None
            return study
    if task.source is not None:  # before the settings, which other workers wait for
        study.set_user_attr(SOURCE_ATTR, task.source)
    study.set_user_attr(SETTINGS_ATTR, settings)
    # A queued trial shows in the dashboard too: its params are the raw ends of the ranges
    # (weight_decay 0.0001 for off), so it carries the applied values from the start.
    for name, params in task.baselines.items():
        applied = {BASELINE_ATTR: name, APPLIED_ATTR: task.space.describe(params)}
        study.enqueue_trial(params, user_attrs=applied, skip_if_exists=True)
    for index, params in enumerate(start_design):
        applied = {START_DESIGN_ATTR: index, APPLIED_ATTR: task.space.describe(params)}
        study.enqueue_trial(params, user_attrs=applied)
    return study


def _check_source(study: optuna.Study, task: Task) -> None:
    """Refuse to resume a study from a task file that has changed since it was made: its
    trials would mix two models or data sets. (Where it lies may differ: another machine.)"""
    stored = study.user_attrs.get(SOURCE_ATTR)
    if stored is None or task.source is None or stored["sha256"] == task.source["sha256"]:
        return
    raise UsageError(
        f"study {study.study_name!r} was made from {stored['task']} with sha256 "
        f"{stored['sha256'][:12]}, and the file has changed since (now "
        f"{task.source['sha256'][:12]}): restore that version to resume the study, or pick a "
        "new --study-name for the changed task"
    )


def _wait_for_settings(study: optuna.Study, seconds: float = 10.0) -> dict | None:
    """Settings of a study another worker may be creating right now (None if it never says)."""
    deadline = time.monotonic() + seconds
    while True:
        stored = study.user_attrs.get(SETTINGS_ATTR)
        if stored is not None or time.monotonic() > deadline or study.trials:
            return stored
        time.sleep(0.2)


def name_the_metric(study: optuna.Study) -> None:
    """Label the objective for optuna-dashboard, which otherwise says "Objective 0"."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([METRIC_NAME])


class StudySnapshot:
    """The study as the pruner sees it after an epoch: its trials read once for all the trials
    that ask it at that epoch (a fused worker's slots, a replay of one).

    `trial.should_prune` reads every trial of the study, the running ones in full with their
    values, once per slot; K slots asking at one epoch would read them K times. Pruners read
    trials through `get_trials` only (Hyperband's bracket studies read the storage themselves).
    """

    def __init__(self, study: optuna.Study) -> None:
        self._study = study
        self._trials = study.get_trials(deepcopy=False)

    def should_prune(self, trial: optuna.Trial) -> bool:
        """What `trial.should_prune` does, against this snapshot of the trial's study."""
        return self._study.pruner.prune(self, trial._get_latest_trial())

    def get_trials(self, deepcopy: bool = True, states=None) -> list[optuna.trial.FrozenTrial]:
        trials = [t for t in self._trials if states is None or t.state in states]
        return copy.deepcopy(trials) if deepcopy else trials

    def _get_trials(self, deepcopy: bool = True, states=None, use_cache: bool = False):
        return self.get_trials(deepcopy, states)

    @property
    def trials(self) -> list[optuna.trial.FrozenTrial]:
        return self.get_trials()

    def __getattr__(self, name: str):
        return getattr(self._study, name)
