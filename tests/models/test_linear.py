import pytest
import torch

from models.activations import ACTIVATIONS
from models.linear import LinearRegressor, make_dataset


def test_default_model_is_the_seeds_bias_free_linear_layer():
    model = LinearRegressor()
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 1
    assert (linears[0].in_features, linears[0].out_features) == (200, 1)
    assert linears[0].bias is None


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_hidden_layer_for_every_activation(activation):
    model = LinearRegressor(hidden=16, activation=activation)
    assert model(torch.randn(5, 200)).shape == (5, 1)


def test_input_dropout_only_in_train_mode():
    torch.manual_seed(0)
    model = LinearRegressor(dropout=0.5)
    x = torch.randn(10, 200)
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))


def test_dataset_sizes_and_generating_rule():
    data = make_dataset(seed=1, n_train=20, n_val=100, n_test=100)
    assert data.train_x.shape == (20, 200) and data.train_y.shape == (20, 1)
    assert data.val_x.shape == (100, 200) and data.test_x.shape == (100, 200)
    # y = 0.05 + 0.01·Σx + N(0, 0.01²): the residual of the rule is the noise.
    residual = data.test_y - (0.05 + 0.01 * data.test_x.sum(dim=1, keepdim=True))
    assert residual.abs().max() < 0.05
    assert 0.005 < residual.std() < 0.015


def test_dataset_is_reproducible_per_seed_and_splits_are_disjoint():
    a, b, c = make_dataset(3), make_dataset(3), make_dataset(4)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    assert not torch.equal(a.train_x, c.train_x)
    assert not torch.equal(a.val_x[:20], a.train_x)
