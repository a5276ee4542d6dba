"""The Optuna objective: one trial trains one configuration and reports every epoch."""

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import optuna
import torch

from search.attrs import (
    AT_CHANCE_ATTR,
    BASELINE_ATTR,
    BEST_EPOCH_ATTR,
    EPOCHS_RUN_ATTR,
    FAIL_REASON_ATTR,
    SECONDS_ATTR,
    START_DESIGN_ATTR,
    STOPPED_EARLY_ATTR,
    TEST_ACCURACY_ATTR,
    TEST_LOSS_ATTR,
    TEST_MSE_ATTR,
    TRAIN_CURVE_ATTR,
    TRAIN_LOSS_ATTR,
    VAL_ACCURACY_ATTR,
)
from search.task import Task
from search.training import EpochStats, Evaluation, TrainResult, evaluate, train


def validation_curve(trial: optuna.trial.FrozenTrial) -> list[float] | None:
    """The validation loss a trial reported, epoch 1 first; None if an epoch is missing or a
    value is not finite (readers of stored studies: search.fidelity, search.tools.bank)."""
    steps = sorted(trial.intermediate_values)
    values = [trial.intermediate_values[step] for step in steps]
    if steps != list(range(1, len(steps) + 1)) or not all(map(math.isfinite, values)):
        return None
    return values


def trial_seed(study_seed: int, trial_number: int) -> int:
    """A distinct, reproducible seed per trial (weights, batch order and dropout masks)."""
    return (study_seed * 1_000_003 + trial_number) % 2**31


def training_seed(study_seed: int, trial: optuna.Trial | optuna.trial.FrozenTrial) -> int:
    """The seed `trial` trains with: a searched trial's follows its number; a baseline's follows
    its name and a start design trial's its index, so that one measured again (after a kill)
    reproduces its first measurement.
    """
    name = trial.user_attrs.get(BASELINE_ATTR)
    if name is None and START_DESIGN_ATTR in trial.user_attrs:
        name = f"start design {trial.user_attrs[START_DESIGN_ATTR]}"
    if name is None:
        return trial_seed(study_seed, trial.number)
    return (study_seed * 1_000_003 + zlib.crc32(name.encode())) % 2**31


@dataclass
class RunOutcome:
    result: TrainResult
    test: Evaluation | None  # None when training diverged before a first finite epoch

    def user_attrs(self, classification: bool) -> dict:
        """The numbers stored on a finished trial; test numbers are stored, never selected on."""
        result = self.result
        attrs: dict = {
            EPOCHS_RUN_ATTR: result.epochs_run,
            STOPPED_EARLY_ATTR: result.stopped_early,
            SECONDS_ATTR: round(result.seconds, 3),
            TRAIN_CURVE_ATTR: [s.train_loss for s in result.history],
        }
        if result.best is not None:
            attrs |= {BEST_EPOCH_ATTR: result.best.epoch, TRAIN_LOSS_ATTR: result.best.train_loss}
            if classification:
                attrs[VAL_ACCURACY_ATTR] = result.best.val_accuracy
        if self.test is not None:
            if classification:
                attrs |= {TEST_LOSS_ATTR: self.test.loss, TEST_ACCURACY_ATTR: self.test.accuracy}
            else:
                attrs[TEST_MSE_ATTR] = self.test.loss
        return attrs


def run_configuration(
    task: Task, params: dict, seed: int, on_epoch: Callable[[EpochStats], None] | None = None
) -> RunOutcome:
    """Train `params` on the task and measure the best-validation model on the test set."""
    regularizers = task.space.regularizers(params)
    torch.manual_seed(seed)
    model = task.build_model(regularizers).to(task.data.train.inputs.device)
    config = task.train_config(regularizers)
    result = train(model, task.data, config, seed=seed, on_epoch=on_epoch)
    test = None
    if result.best is not None:
        test = evaluate(model, task.data.test, config.loss, task.data.transform)
    return RunOutcome(result, test)


def prune_interval(epochs: int) -> int:
    """Epochs between pruning checks: every epoch for short runs, ~10 checks for long ones.

    `should_prune` reads every finished trial from the storage (milliseconds on SQLite, growing
    with the study), which dwarfs a 1 ms epoch of the linear task; the value is still reported
    every epoch (curves stay complete), and a check judges the trial by its values so far, so a
    hopeless trial runs at most interval - 1 epochs longer than with a check every epoch.
    """
    return max(1, epochs // 10)


def asks_pruner(epoch: int, epochs: int) -> bool:
    """Whether a trial asks the pruner after `epoch` (counted from 1) of its `epochs`.

    Never after the last epoch: a trial that trained all its epochs has nothing left to save,
    and pruning it would only throw its result away (Optuna's pruners do prune there: a
    warm-up of n steps protects steps below n only).
    """
    return epoch < epochs and epoch % prune_interval(epochs) == 0


def starts_the_study(user_attrs: dict) -> bool:
    """Whether a trial is a baseline or of the start design: nothing stops them early. They
    are what every pruning decision and the sampler's first
    model compare against, and a cut after one or two epochs would rank the slow-starting,
    strongly regularized ones below the fast starters that overfit later."""
    return BASELINE_ATTR in user_attrs or START_DESIGN_ATTR in user_attrs


def at_chance(val_loss: float, chance_loss: float | None) -> bool:
    """Whether a validation loss is no better than guessing (`chance_loss`, e.g. ln C for C
    classes), within 1%. After its first epoch such a network has not started to learn: of
    the 30 runs of the CIFAR-10 curve bank that sat there after one epoch (sigmoid, strong
    L1), 28 never left it and 2 crawled to 1.73 (the best runs reach 0.95), so training it
    on tells the sampler nothing that its first epoch did not."""
    return chance_loss is not None and val_loss >= 0.99 * chance_loss


def stuck_at_chance(epoch: int, epochs: int, val_loss: float, chance_loss: float | None) -> bool:
    """Whether a trial stops after `epoch` because it is still at chance (`at_chance`): only
    after its first epoch, and not when that is its last (nothing left to save, as for the
    pruner)."""
    return epoch == 1 < epochs and at_chance(val_loss, chance_loss)


def error_reason(error: Exception) -> str:
    """A failed trial's fail_reason for an error that failed it alone (out of memory...)."""
    return f"{type(error).__name__}: {error}"[:500]


def diverged_reason(epoch: int) -> str:
    """A failed trial's fail_reason when its loss diverged at `epoch`."""
    return f"loss became NaN or infinite at epoch {epoch}"


def make_objective(
    task: Task, study_seed: int, on_epoch: Callable[[int, EpochStats], None] | None = None
) -> Callable[[optuna.Trial], float]:
    """The objective; `on_epoch(trial number, stats)` hears of every epoch (the progress)."""
    epochs = task.config.epochs

    def objective(trial: optuna.Trial) -> float:
        params = task.space.suggest(trial)
        curve: list[float] = []
        prunable = not starts_the_study(trial.user_attrs)

        def report(stats: EpochStats) -> None:
            curve.append(stats.train_loss)
            trial.report(stats.val_loss, stats.epoch)
            if on_epoch is not None:
                on_epoch(trial.number, stats)
            stuck = prunable and stuck_at_chance(
                stats.epoch, epochs, stats.val_loss, task.chance_loss
            )
            pruned = prunable and asks_pruner(stats.epoch, epochs) and trial.should_prune()
            if stuck or pruned:
                # Keep what the pruned trial learned: the report draws its curves too.
                trial.set_user_attr(EPOCHS_RUN_ATTR, stats.epoch)
                trial.set_user_attr(TRAIN_CURVE_ATTR, curve)
                if stuck:
                    trial.set_user_attr(AT_CHANCE_ATTR, True)
                reason = "at chance" if stuck else "pruned"
                raise optuna.TrialPruned(f"{reason} at epoch {stats.epoch}")

        try:
            outcome = run_configuration(task, params, training_seed(study_seed, trial), report)
        except RuntimeError as error:  # out of memory and other failures of this trial alone
            trial.set_user_attr(FAIL_REASON_ATTR, error_reason(error))
            raise
        for key, value in outcome.user_attrs(task.classification).items():
            trial.set_user_attr(key, value)
        if outcome.result.diverged:
            epoch = outcome.result.epochs_run + 1
            trial.set_user_attr(FAIL_REASON_ATTR, diverged_reason(epoch))
            # Optuna records a NaN objective as a FAIL without stopping the study.
            return float("nan")
        return outcome.result.best.val_loss

    return objective
