import math

import pytest
import torch

from models.linear import LinearRegressor, make_dataset
from search.training import (
    Split,
    TaskData,
    TrainConfig,
    evaluate,
    l1_ceiling,
    l1_penalty,
    make_optimizer,
    snapshot,
    train,
)


def linear_data(seed: int = 0) -> TaskData:
    raw = make_dataset(seed)
    return TaskData(
        Split(raw.train_x, raw.train_y), Split(raw.val_x, raw.val_y), Split(raw.test_x, raw.test_y)
    )


def trained_weight_norms(**penalties) -> tuple[float, float]:
    torch.manual_seed(0)
    model = LinearRegressor()
    config = TrainConfig("sgd", 0.003, 10, 50, "mse", **penalties)
    train(model, linear_data(), config, seed=0)
    weight = model.net[-1].weight
    return weight.pow(2).sum().sqrt().item(), weight.abs().sum().item()


def test_weight_decay_and_l1_shrink_weights_relative_to_none():
    l2_none, l1_none = trained_weight_norms()
    l2_decayed, _ = trained_weight_norms(weight_decay=10.0)
    _, l1_penalized = trained_weight_norms(l1=0.1)
    assert l2_decayed < 0.5 * l2_none
    assert l1_penalized < 0.5 * l1_none


def test_l1_penalty_counts_weights_not_biases():
    layer = torch.nn.Linear(3, 2)
    with torch.no_grad():
        layer.weight.fill_(-0.5)
        layer.bias.fill_(10.0)
    assert l1_penalty(layer).item() == pytest.approx(3.0)


def diverging_validation() -> TaskData:
    """Validation asks the opposite of training on the same inputs: learning only hurts it."""
    x = torch.randn(20, 200, generator=torch.Generator().manual_seed(0))
    y = torch.ones(20, 1)
    return TaskData(Split(x, y), Split(x, -y), Split(x, -y))


def test_early_stopping_fires_after_exactly_patience_bad_epochs_and_keeps_the_best():
    data = diverging_validation()
    torch.manual_seed(0)
    model = LinearRegressor()
    seen = []
    config = TrainConfig("sgd", 0.003, 10, 20, "mse", patience=3)
    result = train(model, data, config, seed=0, on_epoch=seen.append)
    val_losses = [s.val_loss for s in result.history]
    assert val_losses == sorted(val_losses), "validation loss must rise every epoch here"
    assert result.best.epoch == 1
    assert result.epochs_run == 4 and result.stopped_early
    assert [s.epoch for s in seen] == [1, 2, 3, 4]
    # The weights handed back are those of the best epoch, not of the last one.
    assert evaluate(model, data.val, "mse").loss == pytest.approx(result.best.val_loss, rel=1e-6)


def test_without_patience_every_epoch_runs():
    torch.manual_seed(0)
    result = train(
        LinearRegressor(), diverging_validation(), TrainConfig("sgd", 0.003, 10, 6, "mse"), 0
    )
    assert result.epochs_run == 6 and not result.stopped_early


def test_divergence_is_reported_not_raised():
    torch.manual_seed(0)
    config = TrainConfig("sgd", 1e3, 10, 5, "mse")
    result = train(LinearRegressor(), linear_data(), config, seed=0)
    assert result.diverged
    assert all(math.isfinite(s.val_loss) for s in result.history)


def test_training_is_reproducible_for_a_seed():
    def run() -> list[float]:
        torch.manual_seed(1)
        model = LinearRegressor(dropout=0.3)
        return [
            s.val_loss
            for s in train(model, linear_data(), TrainConfig("sgd", 0.003, 10, 5, "mse"), 7).history
        ]

    assert run() == run()


def test_snapshot_copies_weights_into_the_same_buffers_each_time():
    model = torch.nn.Linear(3, 2)
    first = snapshot(model, None)
    buffers = {name: tensor.data_ptr() for name, tensor in first.items()}
    with torch.no_grad():
        model.weight.fill_(7.0)
    second = snapshot(model, first)
    assert second is first
    assert {name: tensor.data_ptr() for name, tensor in second.items()} == buffers
    assert torch.equal(second["weight"], torch.full((2, 3), 7.0))
    # A copy, not a view: changing the model later leaves the snapshot alone.
    with torch.no_grad():
        model.weight.fill_(0.0)
    assert torch.equal(second["weight"], torch.full((2, 3), 7.0))


def test_evaluate_counts_accuracy_and_averages_loss_over_uneven_batches():
    inputs = torch.eye(5)
    targets = torch.tensor([0, 1, 2, 3, 0])
    model = torch.nn.Identity()
    result = evaluate(model, Split(inputs, targets), "cross_entropy", batch_size=2)
    expected = torch.nn.functional.cross_entropy(inputs, targets).item()
    assert result.accuracy == pytest.approx(4 / 5)
    assert result.loss == pytest.approx(expected, rel=1e-6)


def test_adam_uses_the_fused_kernel_on_cpu_and_sgd_the_plain_one():
    adam = make_optimizer(torch.nn.Linear(3, 2), TrainConfig("adam", 1e-3, 32, 1, "cross_entropy"))
    sgd = make_optimizer(torch.nn.Linear(3, 2), TrainConfig("sgd", 1e-3, 10, 1, "mse"))
    assert adam.defaults["fused"] is True
    assert not sgd.defaults["fused"]


def test_the_l1_ceiling_puts_the_initial_penalty_at_its_share_of_the_chance_loss():
    model = torch.nn.Sequential(torch.nn.Linear(20, 30), torch.nn.ReLU(), torch.nn.Linear(30, 5))
    ceiling = l1_ceiling(model, chance_loss=math.log(5), share=0.25)
    assert ceiling * float(l1_penalty(model).detach()) == pytest.approx(0.25 * math.log(5))
    assert l1_ceiling(model, math.log(5), share=0.5) == pytest.approx(2 * ceiling)
