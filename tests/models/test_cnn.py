import pytest
import torch

from models.activations import ACTIVATIONS
from models.cnn import CifarCNN


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_output_shape_for_every_activation(activation):
    model = CifarCNN(dropout=0.25, activation=activation)
    assert model(torch.randn(4, 3, 32, 32)).shape == (4, 10)


def test_layer_sizes_follow_the_seed():
    model = CifarCNN()
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (3, 32, (3, 3)),
        (32, 64, (3, 3)),
        (64, 128, (3, 3)),
    ]
    assert [(fc.in_features, fc.out_features) for fc in linears] == [
        (2048, 512),
        (512, 512),
        (512, 10),
    ]


def test_dropout_sits_before_the_two_hidden_fc_layers():
    layers = list(CifarCNN(dropout=0.3).classifier)
    dropout_next = [
        type(layers[i + 1]).__name__
        for i, m in enumerate(layers)
        if isinstance(m, torch.nn.Dropout)
    ]
    assert dropout_next == ["Linear", "Linear"]
    assert all(m.p == 0.3 for m in layers if isinstance(m, torch.nn.Dropout))


def test_dropout_is_active_in_train_mode_and_off_in_eval_mode():
    torch.manual_seed(0)
    model = CifarCNN(dropout=0.5)
    x = torch.randn(8, 3, 32, 32)
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="unknown activation"):
        CifarCNN(activation="swishy")
    with pytest.raises(ValueError, match="dropout"):
        CifarCNN(dropout=1.0)


def seed_order_features(model: CifarCNN, activation: str, x: torch.Tensor) -> torch.Tensor:
    """The reference conv → activation → pool, with the model's own conv weights."""
    act = ACTIVATIONS[activation]()
    for conv in (m for m in model.features if isinstance(m, torch.nn.Conv2d)):
        x = torch.nn.functional.max_pool2d(act(conv(x)), 2)
    return x


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_features_and_gradients_match_the_seeds_layer_order(activation):
    torch.manual_seed(0)
    model = CifarCNN(activation=activation)
    x = torch.randn(4, 3, 32, 32)
    ours = model.features(x)
    seed = seed_order_features(model, activation, x)
    torch.testing.assert_close(ours, seed)
    conv1 = model.features[0].weight
    (grad_ours,) = torch.autograd.grad(ours.square().sum(), conv1)
    (grad_seed,) = torch.autograd.grad(seed.square().sum(), conv1)
    torch.testing.assert_close(grad_ours, grad_seed)


def test_pool_comes_first_only_for_monotone_activations():
    def kinds(activation):
        return [type(m).__name__ for m in CifarCNN(activation=activation).features[:3]]

    assert kinds("relu") == ["Conv2d", "MaxPool2d", "ReLU"]
    assert kinds("gelu") == ["Conv2d", "GELU", "MaxPool2d"]
