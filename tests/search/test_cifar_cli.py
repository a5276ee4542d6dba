import math

import optuna
import torch
from optuna.trial import TrialState

from models.cnn import CifarCNN
from search import cifar as cifar_command
from search.config import SearchConfig
from search.tasks import cifar
from search.training import l1_ceiling
from tests.conftest import TINY_CIFAR_SEARCH, run_module


def test_small_search_on_the_real_archive(tmp_path, cifar_archive, cifar_cache):
    url = f"sqlite:///{tmp_path / 'cifar.db'}"
    run = run_module(
        "search.cifar",
        *TINY_CIFAR_SEARCH,
        "--storage",
        url,
        "--data",
        str(cifar_archive),
        "--cache-dir",
        str(cifar_cache),
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    study = optuna.load_study(study_name="cifar", storage=url)
    assert [t.state for t in study.trials[:3]] == [TrialState.COMPLETE] * 3
    assert [t.user_attrs.get("baseline") for t in study.trials[:2]] == [
        "no regularization",
        "reference (dropout 0.25)",
    ]
    # Then the start design, cut to what --trials leaves room for.
    assert study.trials[2].user_attrs["start_design"] == 0
    assert len(study.trials) == 3
    best = study.best_trial
    assert math.isfinite(best.value)
    assert 0.0 <= best.user_attrs["test_accuracy"] <= 1.0
    assert study.user_attrs["settings"]["split_sizes"] == [1000, 500, 1000]


def test_validation_and_training_images_never_overlap(cifar_archive, cifar_cache):
    args = cifar_command.build_parser().parse_args(
        [
            "--data",
            str(cifar_archive),
            "--cache-dir",
            str(cifar_cache),
            "--val-size",
            "500",
            "--train-size",
            "2000",
            "--device",
            "cpu",
        ]
    )
    task = cifar.task_from_args(args)
    assert (len(task.data.train), len(task.data.val), len(task.data.test)) == (2000, 500, 10000)
    train = {bytes(img.numpy()) for img in task.data.train.inputs}
    assert not any(bytes(img.numpy()) in train for img in task.data.val.inputs)
    assert task.data.val.targets.bincount().tolist() == [50] * 10


def test_missing_data_path_is_one_line_and_exit_2(tmp_path):
    run = run_module("search.cifar", "--data", str(tmp_path / "nope"), cwd=tmp_path)
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1
    assert "nope" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "studies" / "cifar.db").exists()


def test_sizes_that_do_not_fit_are_refused(tmp_path, cifar_archive, cifar_cache):
    run = run_module(
        "search.cifar",
        "--data",
        str(cifar_archive),
        "--cache-dir",
        str(cifar_cache),
        "--train-size",
        "49000",
        "--val-size",
        "5000",
        cwd=tmp_path,
    )
    assert run.returncode == 2 and "--train-size 49000" in run.stderr


def test_hyperband_from_epoch_1_and_a_six_trial_start_are_the_default():
    # Measured on the cifar-10k protocol (docs/default-search.md and docs/pruning.md).
    def warmup(*flags: str) -> tuple[str, int]:
        config = SearchConfig.from_args(cifar_command.build_parser().parse_args(flags))
        return config.pruner, config.warmup_epochs

    assert warmup() == ("hyperband", 1)
    assert warmup("--pruner", "median") == ("median", 4)
    assert warmup("--pruner", "predictive", "--epochs", "16") == ("predictive", 8)
    assert warmup("--epochs", "16") == ("hyperband", 2)
    assert warmup("--pruner", "median", "--warmup-epochs", "2") == ("median", 2)
    assert warmup("--epochs", "4") == ("hyperband", 1)  # at least 1
    assert cifar_command.build_parser().parse_args([]).start_trials == 6


def test_the_l1_range_ends_where_the_initial_penalty_is_a_quarter_of_chance():
    space = cifar.search_space(8)
    assert space.l1 == (1e-8, 2.9e-5)
    for seed in range(3):  # the range does not depend on the initialization's seed
        torch.manual_seed(seed)
        assert f"{l1_ceiling(CifarCNN(), math.log(10)):.2g}" == "2.9e-05"
