import math
from dataclasses import replace

import optuna
import pytest
from optuna.trial import TrialState

from search import linear as linear_command
from search.objective import make_objective, prune_interval, trial_seed
from search.space import ACTIVATION, DROPOUT, L1, PATIENCE, WEIGHT_DECAY
from search.tasks import linear


def linear_task(*flags: str):
    return linear.task_from_args(
        linear_command.build_parser().parse_args(["--device", "cpu", *flags])
    )


def test_objective_with_a_fixed_trial_returns_the_best_validation_loss_and_stores_test_numbers():
    task = linear_task("--epochs", "20")
    params = {DROPOUT: 0.1, WEIGHT_DECAY: 5.0, L1: 1e-6, PATIENCE: 4}
    trial = optuna.trial.FixedTrial(params, number=3)
    value = make_objective(task, study_seed=0)(trial)
    attrs = trial.user_attrs
    assert math.isfinite(value) and value > 0
    assert 1 <= attrs["epochs_run"] <= 20 and attrs["best_epoch"] <= attrs["epochs_run"]
    assert len(attrs["train_loss_curve"]) == attrs["epochs_run"]
    assert attrs["test_mse"] > 0 and attrs["train_loss"] >= 0
    # Same trial number, same seed: the objective is reproducible.
    again = optuna.trial.FixedTrial(params, number=3)
    assert make_objective(task, study_seed=0)(again) == value


def test_a_baseline_trains_with_the_same_seed_whatever_its_trial_number():
    """A baseline measured again after a kill gets a new trial number; its result must not
    change with it (it did: trial seeds followed the number)."""
    task = linear_task("--epochs", "20")
    objective = make_objective(task, study_seed=0)
    values = []
    for number in (0, 7):
        trial = optuna.trial.FixedTrial(task.space.params_for(dropout=0.0), number=number)
        trial.set_user_attr("baseline", "no regularization (reference)")
        values.append(objective(trial))
    assert values[0] == values[1]
    searched = optuna.trial.FixedTrial(task.space.params_for(dropout=0.0), number=7)
    assert objective(searched) != values[0]  # a searched trial's seed follows its number


def test_a_start_design_trial_trains_with_the_same_seed_whatever_its_trial_number():
    task = linear_task("--epochs", "20")
    objective = make_objective(task, study_seed=0)
    params = task.space.params_for(dropout=0.5)
    values = {}
    for number, index in ((2, 0), (9, 0), (9, 1)):
        trial = optuna.trial.FixedTrial(params, number=number)
        trial.set_user_attr("start_design", index)
        values[number, index] = objective(trial)
    assert values[2, 0] == values[9, 0] != values[9, 1]


def test_regularization_beats_none_on_the_overfitting_task():
    task = linear_task("--epochs", "30")
    objective = make_objective(task, study_seed=0)
    none = objective(optuna.trial.FixedTrial(task.space.params_for(dropout=0.0)))
    decayed = objective(
        optuna.trial.FixedTrial({DROPOUT: 0.0, WEIGHT_DECAY: 20.0, L1: 1e-6, PATIENCE: 30})
    )
    assert decayed < 0.5 * none


def test_activation_is_searched_only_with_a_hidden_layer():
    trial = optuna.trial.FixedTrial(
        {DROPOUT: 0.0, WEIGHT_DECAY: 1e-4, L1: 1e-6, PATIENCE: 2, ACTIVATION: "tanh"}
    )
    make_objective(linear_task("--epochs", "2", "--hidden", "8"), 0)(trial)
    assert trial.params[ACTIVATION] == "tanh"


def test_a_pruned_trial_ends_as_pruned_in_the_database(tmp_path):
    task = linear_task("--epochs", "10")
    storage = f"sqlite:///{tmp_path / 'pruned.db'}"
    # A threshold no trial can meet prunes every trial at its first report.
    study = optuna.create_study(
        storage=storage, study_name="p", pruner=optuna.pruners.ThresholdPruner(upper=1e-9)
    )
    study.optimize(make_objective(task, 0), n_trials=2)
    reloaded = optuna.load_study(storage=storage, study_name="p")
    assert [t.state for t in reloaded.trials] == [TrialState.PRUNED] * 2
    assert all(t.user_attrs["epochs_run"] == 1 for t in reloaded.trials)


def test_a_diverging_trial_fails_alone_with_its_reason(tmp_path):
    task = linear_task("--epochs", "5")
    unstable = {DROPOUT: 0.0, WEIGHT_DECAY: 100.0, L1: 1e-6, PATIENCE: 5}
    # lr·λ far above 2: SGD's weight decay alone makes the weights explode.
    task = replace(task, config=replace(task.config, lr=50.0))
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'nan.db'}")
    study.enqueue_trial(unstable)
    study.optimize(make_objective(task, 0), n_trials=1)
    trial = study.trials[0]
    assert trial.state == TrialState.FAIL
    assert "NaN or infinite" in trial.user_attrs["fail_reason"]


@pytest.mark.parametrize("number", [0, 1, 99])
def test_trial_seeds_differ_per_trial_and_per_study(number):
    assert trial_seed(0, number) != trial_seed(0, number + 1)
    assert trial_seed(0, number) != trial_seed(1, number)


class CountingPruner(optuna.pruners.BasePruner):
    """A real pruner that never prunes and remembers the steps it was asked at."""

    def __init__(self) -> None:
        self.steps: list[int] = []

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        self.steps.append(trial.last_step)
        return False


def test_every_epoch_is_reported_but_the_pruner_is_asked_every_tenth_of_the_run_but_the_last():
    task = linear_task("--epochs", "30")
    pruner = CountingPruner()
    study = optuna.create_study(pruner=pruner)
    study.enqueue_trial(task.space.params_for(dropout=0.0))
    study.optimize(make_objective(task, study_seed=0), n_trials=1)
    assert sorted(study.trials[0].intermediate_values) == list(range(1, 31))
    assert pruner.steps == [3, 6, 9, 12, 15, 18, 21, 24, 27]


def test_a_trial_that_trained_all_its_epochs_is_never_pruned():
    # The threshold prunes any trial it is asked about; after the last epoch it is not asked,
    # since pruning then saves nothing and loses the trial's result.
    task = linear_task("--epochs", "1")
    study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=1e-9))
    study.optimize(make_objective(task, study_seed=0), n_trials=2)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2


@pytest.mark.parametrize(("epochs", "interval"), [(1, 1), (8, 1), (19, 1), (20, 2), (100, 10)])
def test_prune_interval_checks_short_runs_every_epoch(epochs, interval):
    assert prune_interval(epochs) == interval


def test_a_trial_at_chance_after_its_first_epoch_is_stopped_there(tmp_path):
    # No validation loss is below a chance loss of 1e9, and every one is above 0.
    never, always = (replace(linear_task("--epochs", "5"), chance_loss=c) for c in (1e9, 0.0))
    storage = f"sqlite:///{tmp_path / 'chance.db'}"
    study = optuna.create_study(storage=storage, study_name="c")
    # Early stopping off: a sampled patience of 1 stopped the learning trial after 2 epochs.
    for task in (never, always):
        study.enqueue_trial(task.space.params_for(dropout=0.0))
        study.optimize(make_objective(task, 0), n_trials=1)
    learning, stuck = optuna.load_study(storage=storage, study_name="c").trials
    assert learning.state == TrialState.COMPLETE and learning.user_attrs["epochs_run"] == 5
    assert stuck.state == TrialState.PRUNED and stuck.user_attrs["epochs_run"] == 1
    assert list(stuck.intermediate_values) == [1] and stuck.user_attrs["at_chance"]
    assert "at_chance" not in learning.user_attrs


def test_the_pruner_never_stops_a_baseline_or_a_trial_of_the_start_design(tmp_path):
    task = linear_task("--epochs", "10")
    storage = f"sqlite:///{tmp_path / 'start.db'}"
    study = optuna.create_study(
        storage=storage, study_name="s", pruner=optuna.pruners.ThresholdPruner(upper=1e-9)
    )
    params = task.space.params_for(dropout=0.2)
    study.enqueue_trial(params, user_attrs={"baseline": "no regularization"})
    study.enqueue_trial(params, user_attrs={"start_design": 0})
    study.optimize(make_objective(task, 0), n_trials=3)
    states = [t.state for t in optuna.load_study(storage=storage, study_name="s").trials]
    assert states == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED]
