"""The CUDA path, where a GPU is visible (skipped on the project's CPU machines).

These pin down what `--device cuda` promises: the uint8 data set lives on the GPU, training and
evaluation run there, and several worker processes share one GPU.
"""

import math

import optuna
import pytest
import torch
from optuna.trial import TrialState

from search import cifar as cifar_command
from search.objective import run_configuration
from search.task import Task
from search.tasks import cifar
from search.training import evaluate
from tests.conftest import TINY_CIFAR_SEARCH, run_module

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible")


def tiny_task(cifar_archive, cifar_cache, device: str) -> Task:
    args = cifar_command.build_parser().parse_args(
        [
            *TINY_CIFAR_SEARCH,
            *("--data", str(cifar_archive), "--cache-dir", str(cifar_cache)),
            *("--device", device),
        ]
    )
    return cifar.task_from_args(args)


def test_the_data_set_and_the_training_live_on_the_gpu(cifar_archive, cifar_cache):
    task = tiny_task(cifar_archive, cifar_cache, "auto")
    for split in (task.data.train, task.data.val, task.data.test):
        assert split.inputs.is_cuda and split.inputs.dtype == torch.uint8
        assert split.targets.is_cuda
    outcome = run_configuration(task, task.space.params_for(dropout=0.25), seed=0)
    assert outcome.result.epochs_run == 1 and math.isfinite(outcome.result.best.val_loss)
    assert 0.0 <= outcome.test.accuracy <= 1.0


def test_gpu_evaluation_matches_the_cpu(cifar_archive, cifar_cache):
    gpu = tiny_task(cifar_archive, cifar_cache, "cuda")
    cpu = tiny_task(cifar_archive, cifar_cache, "cpu")
    torch.manual_seed(0)
    model = gpu.build_model(gpu.space.regularizers(gpu.space.params_for(dropout=0.0)))
    on_cpu = evaluate(model, cpu.data.val, "cross_entropy", cpu.data.transform)
    on_gpu = evaluate(model.cuda(), gpu.data.val, "cross_entropy", gpu.data.transform)
    # cuDNN convolutions may run in TF32; an untrained net's near-equal logits can swap a few
    # predictions, but a wrong normalization or a lost batch would move both by far more.
    assert on_gpu.loss == pytest.approx(on_cpu.loss, rel=5e-3)
    assert on_gpu.accuracy == pytest.approx(on_cpu.accuracy, abs=0.02)


def test_two_workers_share_one_gpu(tmp_path, cifar_archive, cifar_cache):
    url = f"sqlite:///{tmp_path / 'cifar.db'}"
    run = run_module(
        "search.cifar",
        *TINY_CIFAR_SEARCH,
        *("--storage", url, "--jobs", "2", "--device", "cuda"),
        *("--data", str(cifar_archive), "--cache-dir", str(cifar_cache)),
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    study = optuna.load_study(study_name="cifar", storage=url)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3


def test_fused_slots_on_the_gpu_match_unfused_runs_within_seed_noise(cifar_archive, cifar_cache):
    """Two fused CNN slots with different activations against the same configurations run
    alone: on a GPU the dropout kernels draw other masks, so only the scale must agree."""
    from search.fused import FusedTrainer

    task = tiny_task(cifar_archive, cifar_cache, "cuda")
    params = [task.space.params_for(0.25, "relu"), task.space.params_for(0.25, "gelu")]
    trainer = FusedTrainer(task, len(params))
    for k, p in enumerate(params):
        trainer.start(k, task.space.regularizers(p), seed=k)
    fused = trainer.train_epoch()
    for k, p in enumerate(params):
        alone = run_configuration(task, p, seed=k).result.best.val_loss
        assert fused[k] is not None and trainer.params[0].is_cuda
        assert abs(fused[k].val_loss - alone) < 0.1 * alone


def test_a_fused_search_on_the_gpu_stores_every_trial(tmp_path, cifar_archive, cifar_cache):
    url = f"sqlite:///{tmp_path / 'fused.db'}"
    run = run_module(
        "search.cifar",
        *TINY_CIFAR_SEARCH,
        *("--storage", url, "--fuse", "4", "--device", "cuda", "--trials", "6"),
        *("--data", str(cifar_archive), "--cache-dir", str(cifar_cache)),
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    study = optuna.load_study(study_name="cifar", storage=url)
    assert len(study.trials) == 6
    assert all(t.state.is_finished() and t.intermediate_values for t in study.trials)
