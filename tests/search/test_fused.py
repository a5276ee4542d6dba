import io
import math
import signal
from dataclasses import replace

import pytest
import torch
from optuna.trial import TrialState
from torch import nn

from search import linear as linear_command
from search.attrs import (
    APPLIED_ATTR,
    BASELINE_ATTR,
    BEST_EPOCH_ATTR,
    EPOCHS_RUN_ATTR,
    TEST_MSE_ATTR,
)
from search.config import SearchConfig
from search.fused import FusedTrainer, why_unfusable
from search.fused_worker import FusedWorker
from search.objective import run_configuration
from search.progress import SearchProgress
from search.space import Regularizers
from search.task import Task
from search.tasks import linear
from search.training import Split, TaskData, TrainConfig, train
from search.workers import worker_gpu
from tests.conftest import TINY_CIFAR_SEARCH, run_module
from tests.search.workers_helpers import (
    BEATS,
    assert_exact_study,
    running_with_epochs,
    start_worker,
    stop_mid_trial,
    trials,
    wait_until,
)

MIXED = [  # applied values: dropout, L2, L1, patience of four slots
    {"dropout": 0.3, "weight_decay": 1.0, "l1": 1e-3, "patience": 100},
    {"dropout": 0.0, "weight_decay": 1e-4, "l1": 1e-6, "patience": 3},
    {"dropout": 0.8, "weight_decay": 30.0, "l1": 1e-6, "patience": 100},
    {"dropout": 0.1, "weight_decay": 1e-4, "l1": 0.1, "patience": 100},
]


def linear_task(*flags: str) -> Task:
    return linear.task_from_args(
        linear_command.build_parser().parse_args(["--device", "cpu", *flags])
    )


def run_slots(trainer: FusedTrainer, epochs: int) -> dict:
    """Train every started slot until it diverges, runs out of patience or of epochs."""
    done = {}
    while trainer.active:
        for k, stats in trainer.train_epoch().items():
            slot = trainer.slots[k]
            if stats is None or trainer.out_of_patience(k) or slot.epoch == epochs:
                done[k] = (slot, trainer.finish(k))
                trainer.stop(k)
    return done


def assert_same_run(slot, test, alone) -> None:
    """The same run to float32 rounding: a batched matmul may sum in another order than the
    single one, in the forward pass and the gradient."""
    history = [s.val_loss for s in slot.result.history]
    assert len(history) == alone.result.epochs_run
    for fused_loss, loss in zip(history, [s.val_loss for s in alone.result.history], strict=True):
        assert fused_loss == pytest.approx(loss, rel=1e-5)
    assert slot.result.best.epoch == alone.result.best.epoch
    assert test.loss == pytest.approx(alone.test.loss, rel=1e-5)


@pytest.mark.parametrize("hidden", [(), ("--hidden", "8")])
def test_four_slots_with_mixed_regularizers_match_four_separate_runs(hidden):
    task = linear_task("--epochs", "15", *hidden)
    trainer = FusedTrainer(task, len(MIXED))
    activations = ("relu", "gelu", "tanh", "sigmoid") if hidden else ("relu",) * 4
    params = []
    for k, (applied, activation) in enumerate(zip(MIXED, activations, strict=True)):
        params.append(
            task.space.params_for(applied["dropout"], activation)
            | {name: applied[name] for name in ("weight_decay", "l1", "patience")}
        )
        trainer.start(k, task.space.regularizers(params[k]), seed=100 + k)
    done = run_slots(trainer, 15)
    for k, p in enumerate(params):
        alone = run_configuration(task, p, seed=100 + k)
        assert_same_run(*done[k], alone)


def test_a_single_slot_reproduces_train_bit_for_bit_on_a_cpu():
    task = linear_task("--epochs", "20")
    params = task.space.params_for(0.5) | {"weight_decay": 2.0, "l1": 1e-3}
    trainer = FusedTrainer(task, 1)
    trainer.start(0, task.space.regularizers(params), seed=7)
    [(slot, _)] = run_slots(trainer, 20).values()
    torch.manual_seed(7)
    model = task.build_model(task.space.regularizers(params))
    train(model, task.data, task.train_config(task.space.regularizers(params)), seed=7)
    for name, weight in model.state_dict().items():
        assert torch.equal(slot.best_state[name], weight)


def test_a_refilled_slot_starts_as_a_fresh_run():
    task = linear_task("--epochs", "10")
    regs = task.space.regularizers(MIXED[0] | {"activation": "relu"})
    trainer = FusedTrainer(task, 2)
    trainer.start(0, regs, seed=1)
    trainer.start(1, regs, seed=2)
    for _ in range(3):
        trainer.train_epoch()
    trainer.stop(0)
    trainer.start(0, regs, seed=3)  # weights, optimizer state and generators reset in place
    fresh = FusedTrainer(task, 1)
    fresh.start(0, regs, seed=3)
    assert torch.equal(fresh.params[0][0], trainer.params[0][0])
    assert trainer.steps[0] == 0 and not trainer.exp_avg[0][0].any()
    first, alone = trainer.train_epoch()[0], fresh.train_epoch()[0]
    assert first.val_loss == pytest.approx(alone.val_loss, rel=1e-5)
    assert first.train_loss == pytest.approx(alone.train_loss, rel=1e-5)


def test_a_nan_in_one_slot_reaches_no_other():
    task = linear_task("--epochs", "5")
    regs = task.space.regularizers(MIXED[2] | {"activation": "relu"})
    trainer = FusedTrainer(task, 2)
    trainer.start(0, regs, seed=5)
    trainer.start(1, regs, seed=6)
    with torch.no_grad():
        trainer.params[0][1, 0, 0] = math.nan
    stats = trainer.train_epoch()
    assert stats[1] is None and trainer.slots[1].result.diverged

    alone = FusedTrainer(task, 1)
    alone.start(0, regs, seed=5)
    assert stats[0].val_loss == pytest.approx(alone.train_epoch()[0].val_loss, rel=1e-5)


def test_adam_slots_of_a_cnn_with_different_activations_match_separate_runs():
    """Grouped convolutions, per-slot pooling order (ReLU pools first, GELU cannot) and Adam
    with per-slot weight decay; Adam here is the textbook update where train() uses torch's
    fused kernel, so the two agree to rounding."""
    from models.cnn import CifarCNN

    generator = torch.Generator().manual_seed(0)
    images = torch.randn(64, 3, 32, 32, generator=generator)
    labels = torch.randint(0, 10, (64,), generator=generator)
    split = Split(images, labels)
    config = TrainConfig("adam", 1e-3, 16, 2, "cross_entropy")
    task = Task(
        "cnn",
        TaskData(split, Split(images[:32], labels[:32]), Split(images[32:], labels[32:])),
        space=linear_task().space,  # unused by the trainer
        config=config,
        build_model=lambda reg: CifarCNN(reg.dropout, reg.activation),
    )
    regs = [
        Regularizers(dropout=0.0, weight_decay=1e-3, activation="relu"),
        Regularizers(dropout=0.0, weight_decay=0.0, l1=1e-5, activation="gelu"),
    ]
    trainer = FusedTrainer(task, 2)
    for k, reg in enumerate(regs):
        trainer.start(k, reg, seed=10 + k)
    fused = [trainer.train_epoch() for _ in range(2)]
    for k, reg in enumerate(regs):
        torch.manual_seed(10 + k)
        model = CifarCNN(reg.dropout, reg.activation)
        cfg = TrainConfig("adam", 1e-3, 16, 2, "cross_entropy", reg.weight_decay, reg.l1)
        alone = train(model, task.data, cfg, seed=10 + k)
        for epoch, stats in enumerate(alone.history):
            assert fused[epoch][k].val_loss == pytest.approx(stats.val_loss, rel=1e-4)


def test_only_layers_that_treat_each_sample_alone_fuse():
    # A BatchNorm without affine weights has no parameters, yet its batch statistics would mix
    # the slots' samples (a baseline's loss moved from 0.5440 alone to 0.5504 in two slots).
    assert why_unfusable(nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.Dropout(0.1))) is None
    assert why_unfusable(linear_task().build_model(Regularizers())) is None
    for layer in (nn.BatchNorm1d(8, affine=False, track_running_stats=False), nn.Softmax(0)):
        model = nn.Sequential(nn.Linear(4, 8), layer)
        assert why_unfusable(model) == f"has layer '1', a {type(layer).__name__}"
    assert why_unfusable(nn.Module()) == "is a Module, with its own forward"


def test_a_fused_worker_s_trials_are_stored_like_unfused_ones(tmp_path):
    """Every epoch's value, the pruner's cuts and the user attributes, and fused and unfused
    workers on one study keep its exact --trials total."""
    url = f"sqlite:///{tmp_path / 'mixed.db'}"
    # No worker dies here: a grace period that a starved heartbeat thread cannot outlast.
    flags = ("--storage", url, "--trials", "14", "--epochs", "20", "--grace-period", "60")
    fused = start_worker(*flags, "--fuse", "4", cwd=tmp_path)
    plain = start_worker(*flags, "--fuse", "1", cwd=tmp_path)
    for worker, at_once in ((fused, "4 trials at a time (--fuse)"), (plain, "at a time")):
        out, err = worker.communicate(timeout=600)
        assert worker.returncode == 0, err
        assert "Warning" not in err, err  # Optuna's, for asking with heartbeats on
        # Said in the first line, which piped output shows without the terminal's bar.
        assert (at_once in out.splitlines()[0]) == (worker is fused), out
    found = assert_exact_study(url, 14)
    for trial in found:
        steps = sorted(trial.intermediate_values)
        assert steps == list(range(1, len(steps) + 1)), trial.number
        assert trial.user_attrs[EPOCHS_RUN_ATTR] == len(steps)
        if trial.state == TrialState.COMPLETE:
            assert {TEST_MSE_ATTR, BEST_EPOCH_ATTR, APPLIED_ATTR} <= set(trial.user_attrs)
            assert trial.value == min(trial.intermediate_values.values())
    assert any(t.state == TrialState.PRUNED for t in found)


@pytest.mark.slow
def test_the_first_line_says_how_many_trials_run_at_once(tmp_path):
    """Piped output has no bar: the first line says it, and near the end of a study no more
    than are left (it said "3 trials at a time each" of 2 workers with 3 trials left)."""
    url = f"sqlite:///{tmp_path / 'lines.db'}"
    flags = ("--jobs", "2", "--epochs", "3", "--storage", url)
    first = run_module("search.linear", "--trials", "9", *flags, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[0].endswith(
        " with 2 workers, 4 trials at a time each (--fuse)"
    )
    end = run_module("search.linear", "--trials", "12", *flags, cwd=tmp_path)
    assert end.returncode == 0, end.stderr
    assert end.stdout.splitlines()[0].endswith(
        "running 3 more with 2 workers, 3 trials at a time (--fuse)"
    )


def test_a_slot_whose_trial_raises_fails_alone_and_the_worker_goes_on(tmp_path):
    """As an unfused worker's trial: out of memory building one slot's model, or measuring it
    on the test set, failed the whole fused worker with a traceback."""
    flags = ["--trials", "8", "--epochs", "3", "--storage", f"sqlite:///{tmp_path / 'f.db'}"]
    config = SearchConfig.from_args(linear_command.build_parser().parse_args(flags))
    task = linear.build_task(config)

    def build_model(regularizers):
        if regularizers.dropout > 0.45:
            raise RuntimeError("CUDA out of memory (simulated by this test)")
        return task.build_model(regularizers)

    quiet = SearchProgress(config.trials, config.epochs, out=io.StringIO(), live=False)
    worker = FusedWorker(replace(task, build_model=build_model), config, quiet, 4)
    finish, measured = worker.trainer.finish, []

    def finish_out_of_memory_once(k: int):
        measured.append(k)
        if len(measured) == 1:
            raise RuntimeError("CUDA out of memory on the test set (simulated by this test)")
        return finish(k)

    worker.trainer.finish = finish_out_of_memory_once
    try:
        worker.run()
    finally:
        worker.close()
    found = worker.study.trials
    assert len(found) == 8 and all(t.state.is_finished() for t in found)
    failed = {t.number: t.user_attrs["fail_reason"] for t in found if t.state == TrialState.FAIL}
    building = [
        n for n, reason in failed.items() if reason.endswith("memory (simulated by this test)")
    ]
    testing = [n for n, reason in failed.items() if "on the test set" in reason]
    assert building and all(found[n].params["dropout"] > 0.45 for n in building)
    assert len(testing) == 1 and failed[testing[0]].startswith("RuntimeError: CUDA out of")
    assert sorted(building + testing) == sorted(failed)  # no other trial failed
    assert any(t.state == TrialState.COMPLETE for t in found)


@pytest.mark.slow
def test_a_killed_fused_worker_s_trials_are_failed_and_run_again(tmp_path):
    url = f"sqlite:///{tmp_path / 'kill.db'}"
    # 300 epochs: long enough to be caught, and killed, mid-trial.
    flags = ("--storage", url, "--epochs", "300", *BEATS)
    victim = start_worker(*flags, "--trials", "6", "--fuse", "3", cwd=tmp_path)
    wait_until(lambda: sum(t.state == TrialState.RUNNING for t in trials(url)) == 3)
    wait_until(lambda: running_with_epochs(url, 3))
    victim.send_signal(signal.SIGKILL)
    victim.communicate()
    killed = [t.number for t in trials(url) if t.state == TrialState.RUNNING]
    assert len(killed) == 3
    # Room for every retry: trials that stopped early may have finished before the kill.
    survivor = start_worker(*flags, "--trials", "12", "--fuse", "2", cwd=tmp_path)
    _, err = survivor.communicate(timeout=600)
    assert survivor.returncode == 0, err
    found = assert_exact_study(url, 12)
    for number in killed:
        assert found[number].state == TrialState.FAIL
        assert found[number].user_attrs["fail_reason"].startswith("worker stopped")
        retry = next(t for t in found if t.system_attrs.get("failed_trial") == number)
        assert retry.params == found[number].params and retry.state != TrialState.FAIL


def test_workers_take_the_gpus_in_turn():
    assert [worker_gpu(i, 3) for i in range(7)] == [0, 1, 2, 0, 1, 2, 0]
    assert worker_gpu(5, 1) == 0


@pytest.mark.slow
def test_a_fused_cifar_search_is_read_by_the_report_and_fidelity(
    tmp_path, cifar_archive, cifar_cache
):
    url = f"sqlite:///{tmp_path / 'cifar.db'}"
    data = ("--data", str(cifar_archive), "--cache-dir", str(cifar_cache))
    search = run_module(
        "search.cifar",
        *TINY_CIFAR_SEARCH,
        # Fused CNN slots are slow on a CPU (docs/fused.md): fewer images than cifar-tiny.
        *("--train-size", "128", "--val-size", "100", "--test-size", "100"),
        *("--trials", "5", "--fuse", "4", "--device", "cpu", "--storage", url, *data),
        cwd=tmp_path,
    )
    assert search.returncode == 0, search.stderr
    found = trials(url, "cifar")
    assert len(found) == 5 and all(t.state.is_finished() for t in found)
    assert all(t.intermediate_values and APPLIED_ATTR in t.user_attrs for t in found)
    report = run_module(
        "search.report",
        *("--storage", url, "--study-name", "cifar", "--repeats", "1", "--no-ablation", *data),
        cwd=tmp_path,
    )
    assert report.returncode == 0, report.stderr
    fidelity = run_module("search.tools.fidelity", "--storage", url, cwd=tmp_path)
    assert fidelity.returncode == 0, fidelity.stderr


def test_fused_by_default_on_a_gpu_and_for_small_models_on_a_cpu():
    # On a CPU the linear search measured 1.4x faster fused, a model of 51,000 parameters
    # 1.1x, and the CNN at 0.4x of as many processes (docs/fused.md).
    from search.fused_worker import default_fuse, fuse_slots

    assert default_fuse("cuda", 2_000_000) == 8
    assert (default_fuse("cpu", 200), default_fuse("cpu", 12_900)) == (4, 4)
    assert (default_fuse("cpu", 51_000), default_fuse("cpu", 2_000_000)) == (1, 1)
    assert default_fuse("mps", 200) == 1

    def config(*flags: str) -> SearchConfig:
        return SearchConfig.from_args(linear_command.build_parser().parse_args(flags))

    assert fuse_slots(linear_task(), config()) == 4
    assert fuse_slots(linear_task("--hidden", "256"), config()) == 1
    assert fuse_slots(linear_task(), config("--fuse", "1")) == 1
    # No more slots than trials: an empty slot trains too.
    assert fuse_slots(linear_task(), config("--fuse", "100000", "--trials", "5")) == 5
    assert fuse_slots(linear_task(), config("--trials", "2")) == 2


@pytest.mark.slow
def test_a_fused_worker_stopped_by_sigterm_leaves_its_trials_to_run_again(tmp_path):
    url = f"sqlite:///{tmp_path / 'term.db'}"
    flags = ("--storage", url, "--trials", "50", "--epochs", "1000", "--pruner", "none", *BEATS)
    reason = "interrupted (SIGTERM)"
    search, out, err = stop_mid_trial(
        url, (*flags, "--fuse", "3"), tmp_path, signal.SIGTERM, reason, baseline=False
    )
    assert search.returncode == 143, err
    stopped = [
        t for t in trials(url) if t.state == TrialState.FAIL and BASELINE_ATTR not in t.user_attrs
    ]
    assert stopped and all(t.user_attrs["fail_reason"] == reason for t in stopped)
    # The stop line names them, as an unfused stop: no trial line each (nor an estimate).
    assert not [n for t in stopped if (n := f"trial {t.number:3d} FAIL") in out], out
    waiting = {
        t.system_attrs["failed_trial"]: t for t in trials(url) if t.state == TrialState.WAITING
    }
    assert sorted(waiting) == [t.number for t in stopped]
    assert all(waiting[t.number].params == t.params for t in stopped)


def test_a_full_study_is_not_checked_after_every_epoch_of_the_last_trials(tmp_path, monkeypatch):
    # With a slot left empty at the end of a search, the checks under the lock (the stale
    # trials, the baselines, the counts: 4x a linear epoch) ran after every epoch: a lone
    # 1000-epoch linear trial took 20 s at the CPU default of 4 slots against 4 s unfused.
    from search import run_search
    from search.workers import Worker
    from tests.search.test_spec import sequential_spec

    checks = []
    full = Worker._full
    monkeypatch.setattr(Worker, "_full", lambda self: checks.append(1) or full(self))
    # Five baselines (no regularization and these four), each trained to the end: the first
    # four together, then the fifth with 3 of the 4 slots empty in a full study.
    baselines = {f"dropout {p}": {"dropout": p} for p in (0.1, 0.2, 0.3, 0.4)}
    task = sequential_spec(epochs=60, baselines=baselines)
    study = run_search(task, trials=5, storage=f"sqlite:///{tmp_path / 'f.db'}", device="cpu")
    assert [len(t.intermediate_values) for t in study.trials] == [60] * 5
    assert len(checks) < 10, len(checks)
