import inspect
import math
import random

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from search.attrs import BASELINE_ATTR
from search.pruning import (
    HISTORY,
    HISTORY_BEST,
    CurvePredictor,
    PredictivePruner,
    SamplerView,
    best_so_far,
    recent_history,
)
from search.study import make_sampler
from tests.conftest import run_module

DISTRIBUTIONS = {
    "dropout": FloatDistribution(0.0, 0.7),
    "activation": CategoricalDistribution(("relu", "gelu", "sigmoid")),
}
# Slow starters (strong dropout, GELU) end best; fast starters (no dropout, ReLU) lead early
# and stall; sigmoid networks stay at chance.
SLOW = [1.9, 1.6, 1.4, 1.25, 1.15, 1.08, 1.03, 1.0]
FAST = [1.45, 1.35, 1.3, 1.28, 1.27, 1.27, 1.28, 1.3]
CHANCE = [2.31, 2.305, 2.303, 2.303, 2.302, 2.302, 2.302, 2.302]


def _completed(study, params, curve, shift=0.0, attrs=None):
    values = {epoch: value + shift for epoch, value in enumerate(curve, start=1)}
    study.add_trial(
        optuna.trial.create_trial(
            params=params,
            distributions=DISTRIBUTIONS,
            value=min(values.values()),
            intermediate_values=values,
            user_attrs=attrs or {},
        )
    )


def _study(pruner=None, sampler=None) -> optuna.Study:
    study = optuna.create_study(pruner=pruner, sampler=sampler)
    for i in range(6):
        _completed(study, {"dropout": 0.55 + 0.02 * i, "activation": "gelu"}, SLOW, 0.01 * i)
    for i in range(10):
        _completed(study, {"dropout": 0.02 * i, "activation": "relu"}, FAST, 0.01 * i)
    for i in range(3):
        _completed(study, {"dropout": 0.3 + 0.1 * i, "activation": "sigmoid"}, CHANCE, 0.001 * i)
    return study


def _prunes(pruner, study, params, curve) -> bool:
    """Whether `pruner` stops a new trial of `params` after the epochs of `curve`."""
    study.enqueue_trial(params)
    trial = study.ask(DISTRIBUTIONS)
    for epoch, value in enumerate(curve, start=1):
        trial.report(value, epoch)
    result = pruner.prune(study, study._storage.get_trial(trial._trial_id))
    study.tell(trial, state=TrialState.FAIL)
    return result


def test_a_slow_starter_that_ends_best_is_kept_where_the_median_rule_prunes_it():
    study = _study()
    slow = {"dropout": 0.6, "activation": "gelu"}
    first_epoch = [1.90]  # like the best slow starter, far behind the median (1.54) at epoch 1
    assert _prunes(optuna.pruners.MedianPruner(n_startup_trials=5), study, slow, first_epoch)
    assert not _prunes(PredictivePruner(n_warmup_steps=1), study, slow, first_epoch)
    assert not _prunes(PredictivePruner(n_warmup_steps=1), study, slow, SLOW[:3])


def test_a_hopeless_curve_is_pruned():
    study = _study()
    assert _prunes(
        PredictivePruner(n_warmup_steps=1),
        study,
        {"dropout": 0.4, "activation": "sigmoid"},
        CHANCE[:2],
    )


def test_nothing_is_pruned_before_warmup_or_with_too_few_completed_trials():
    study = _study()
    hopeless = {"dropout": 0.4, "activation": "sigmoid"}
    assert not _prunes(PredictivePruner(n_warmup_steps=3), study, hopeless, CHANCE[:2])
    assert not _prunes(PredictivePruner(min_completed=100), study, hopeless, CHANCE[:2])


def test_every_nth_trial_is_never_pruned():
    study = _study()
    hopeless = {"dropout": 0.4, "activation": "sigmoid"}
    n = len(study.trials)  # the number of the next trial
    assert not _prunes(PredictivePruner(unpruned_every=n), study, hopeless, CHANCE[:2])


def test_predictions_follow_what_similar_trials_did_after_the_same_epoch():
    study = _study()
    predictor = CurvePredictor(study.get_trials(states=(TrialState.COMPLETE,)))
    predicted, bound = predictor.predict({"dropout": 0.6, "activation": "gelu"}, SLOW[0], 1)
    assert predicted == pytest.approx(1.0, abs=0.05)
    assert bound <= predicted
    predicted, _ = predictor.predict({"dropout": 0.05, "activation": "relu"}, FAST[0], 1)
    assert predicted == pytest.approx(1.27, abs=0.05)


def test_best_so_far_uses_the_final_value_after_a_trial_stopped_early():
    study = optuna.create_study()
    _completed(study, {"dropout": 0.1, "activation": "relu"}, [1.5, 1.2, 1.3])
    trial = study.trials[0]
    assert best_so_far(trial, 1) == 1.5
    assert best_so_far(trial, 3) == 1.2
    assert best_so_far(trial, 8) == 1.2


def _pruned(study, params, curve):
    study.add_trial(
        optuna.trial.create_trial(
            params=params,
            distributions=DISTRIBUTIONS,
            state=TrialState.PRUNED,
            intermediate_values=dict(enumerate(curve, start=1)),
        )
    )


def test_the_sampler_sees_a_pruned_trial_at_its_predicted_final_value():
    study = _study()
    _pruned(study, {"dropout": 0.6, "activation": "gelu"}, SLOW[:2])
    shown = SamplerView(optuna.samplers.TPESampler(), pruned="predicted")._view(study)
    last = shown.get_trials(deepcopy=False)[-1]
    assert last.state == TrialState.COMPLETE
    assert last.value == pytest.approx(1.0, abs=0.05)  # not its last value, 1.6
    assert study.trials[-1].state == TrialState.PRUNED  # the study itself is unchanged
    assert math.isinf(study.best_value) is False and study.best_trial.value <= 1.0


def test_the_sampler_can_be_shown_no_pruned_trials_and_no_baselines():
    study = _study()
    _pruned(study, {"dropout": 0.6, "activation": "gelu"}, SLOW[:2])
    _completed(study, {"dropout": 0.25, "activation": "relu"}, FAST, attrs={BASELINE_ATTR: "x"})
    view = SamplerView(optuna.samplers.TPESampler(), pruned="hidden", baselines="hidden")
    shown = view._view(study).get_trials(deepcopy=False)
    assert len(shown) == len(study.trials) - 2
    assert all(t.state == TrialState.COMPLETE for t in shown)
    assert all(BASELINE_ATTR not in t.user_attrs for t in shown)


def test_past_its_history_the_sampler_sees_the_best_and_the_most_recent_trials():
    study = optuna.create_study()
    for number in range(60):
        value = 100.0 - number if number % 2 else float(number)  # even numbers are the best
        state = TrialState.PRUNED if number % 7 == 0 else TrialState.COMPLETE
        study.add_trial(
            optuna.trial.create_trial(
                params={"dropout": 0.5},
                distributions={"dropout": FloatDistribution(0.0, 0.7)},
                value=None if state == TrialState.PRUNED else value,
                state=state,
                intermediate_values={1: value},
            )
        )
    running = study.ask()
    trials = study.get_trials(deepcopy=False)
    assert recent_history(trials, 60) == trials
    shown = recent_history(trials, 40)
    numbers = {t.number for t in shown}
    best = sorted((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.value)[
        :HISTORY_BEST
    ]
    assert {t.number for t in best} <= numbers
    assert running.number in numbers and len(shown) == 41
    others = numbers - {t.number for t in best} - {running.number}
    dropped = [t.number for t in trials if t.number not in numbers]
    assert len(others) == 40 - HISTORY_BEST and min(others) > max(dropped)  # the most recent
    view = SamplerView(optuna.samplers.TPESampler(), history=40)._view(study)
    assert len(view.get_trials(deepcopy=False)) == 41
    assert len(study.trials) == 61  # the study itself keeps everything


def test_the_capped_history_kept_between_trials_is_the_one_computed_afresh():
    # Workers leave trials running and finish them out of order; the view keeps its selection
    # up to date between trials and must show exactly what `recent_history` would.
    rng = random.Random(0)
    study = optuna.create_study()
    sampler = SamplerView(optuna.samplers.RandomSampler(seed=0), history=30)
    running = []
    for step in range(150):
        running.append(study.ask({"dropout": FloatDistribution(0.0, 0.7)}))
        if len(running) > 3 or rng.random() < 0.5:
            trial = running.pop(rng.randrange(len(running)))
            state = rng.choice([TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED])
            study.tell(trial, rng.random() if state == TrialState.COMPLETE else None, state)
        trials = study.get_trials(deepcopy=False)
        shown = sampler._view(study).get_trials(deepcopy=False)
        assert shown == recent_history(trials, 30), step
    assert len(shown) == 30 + len(running)


def test_only_samplers_that_model_the_history_get_a_cap():
    assert isinstance(make_sampler("tpe", 0), SamplerView)
    assert make_sampler("tpe", 0).history == HISTORY
    assert isinstance(make_sampler("tpe", 0, history=None), optuna.samplers.TPESampler)
    assert isinstance(make_sampler("cmaes", 0), optuna.samplers.CmaEsSampler)
    assert isinstance(make_sampler("random", 0), optuna.samplers.RandomSampler)


@pytest.mark.parametrize("pruned", ["ranked-last", "predicted", "hidden"])
def test_tpe_behind_the_view_runs_a_pruned_search(pruned):
    sampler = SamplerView(
        optuna.samplers.TPESampler(seed=0, multivariate=True, n_startup_trials=3), pruned=pruned
    )
    study = optuna.create_study(sampler=sampler, pruner=PredictivePruner(min_completed=3))

    def objective(trial):
        dropout = trial.suggest_float("dropout", 0.0, 0.7)
        activation = trial.suggest_categorical("activation", ["relu", "gelu", "sigmoid"])
        curve = CHANCE if activation == "sigmoid" else SLOW if dropout > 0.4 else FAST
        for epoch, value in enumerate(curve, start=1):
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return min(curve)

    study.optimize(objective, n_trials=25)
    states = [t.state for t in study.trials]
    assert states.count(TrialState.COMPLETE) + states.count(TrialState.PRUNED) == 25
    assert study.best_value == pytest.approx(1.0)


def test_what_optunas_hyperband_builds_for_eight_epochs():
    """docs/pruning.md cites this: every bracket prunes, and TPE learns from every bracket."""
    reads = []  # per TPE sample: (trials TPE reads, trials of the new trial's bracket)

    class Spy(optuna.samplers.TPESampler):
        def _sample(self, study, trial, search_space):
            everything = study._get_trials(deepcopy=False, use_cache=True)
            reads.append((len(everything), len(study.get_trials(deepcopy=False))))
            return super()._sample(study, trial, search_space)

    pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=8)
    study = optuna.create_study(sampler=Spy(seed=0, multivariate=True), pruner=pruner)
    pruned_at = set()

    def objective(trial):
        x = trial.suggest_float("x", 0, 1)
        for epoch in range(1, 9):
            trial.report(x + 1 / epoch, epoch)
            if epoch < 8 and trial.should_prune():
                pruned_at.add((pruner._get_bracket_id(study, trial), epoch))
                raise optuna.TrialPruned()
        return x

    study.optimize(objective, n_trials=60)
    assert pruner._n_brackets == 2
    # Bracket 0 prunes after epochs 1 and 3, bracket 1 after epoch 3: no bracket runs unpruned.
    assert pruned_at == {(0, 1), (0, 3), (1, 3)}
    # The sampler gets a study whose get_trials keeps the new trial's bracket, but TPE reads
    # _get_trials, which that study leaves unfiltered: it learns from the trials of both.
    assert "study._get_trials(" in inspect.getsource(optuna.samplers.TPESampler._sample)
    assert reads and all(read > bracket for read, bracket in reads)


def test_a_real_search_prunes_predictively_and_shows_the_sampler_predictions(tmp_path):
    url = f"sqlite:///{tmp_path / 'linear.db'}"
    flags = ("--trials", "24", "--epochs", "30", "--storage", url, "--pruner", "predictive")
    result = run_module("search.linear", *flags, "--pruned-as", "predicted", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name="linear", storage=url)
    states = [t.state for t in study.trials]
    assert len(states) == 24 and TrialState.RUNNING not in states
    assert TrialState.PRUNED in states  # the linear task has hopeless corners (L1 near 1)
    bad = run_module("search.linear", *flags, "--pruned-as", "median", cwd=tmp_path)
    assert bad.returncode == 2 and "invalid choice: 'median'" in bad.stderr
