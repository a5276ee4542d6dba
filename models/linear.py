"""The overfitting linear task of the seed: 200 features, 20 training samples."""

from dataclasses import dataclass

import torch
from torch import nn

from models.activations import make_activation

N_FEATURES = 200
TRUE_BIAS = 0.05
TRUE_WEIGHT = 0.01
NOISE_STD = 0.01


class LinearRegressor(nn.Module):
    """The reference bias-free Linear(200, 1), optionally with one hidden layer.

    Dropout acts on the inputs: with one linear layer there is no hidden representation to drop,
    and dropping inputs is what makes it a regularizer here (it is equivalent to a ridge penalty
    in expectation). With `hidden` set, the activation of the hidden layer matters too.
    """

    def __init__(
        self,
        n_features: int = N_FEATURES,
        hidden: int | None = None,
        dropout: float = 0.0,
        activation: str = "relu",
    ):
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        layers: list[nn.Module] = [nn.Dropout(dropout)]
        if hidden:
            layers += [nn.Linear(n_features, hidden), make_activation(activation)]
            n_features = hidden
        layers.append(nn.Linear(n_features, 1, bias=False))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@dataclass(frozen=True)
class RegressionData:
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


def make_dataset(
    seed: int,
    n_features: int = N_FEATURES,
    n_train: int = 20,
    n_val: int = 100,
    n_test: int = 100,
) -> RegressionData:
    """x ~ N(0, 1)^n_features, y = 0.05 + 0.01·Σx + N(0, 0.01²); targets have shape [n, 1].

    The seed had train and test only; validation is drawn from the same distribution so that
    selection never sees the test set.
    """
    gen = torch.Generator().manual_seed(seed)
    sizes = (n_train, n_val, n_test)
    x = torch.randn(sum(sizes), n_features, generator=gen)
    noise = NOISE_STD * torch.randn(sum(sizes), 1, generator=gen)
    y = TRUE_BIAS + TRUE_WEIGHT * x.sum(dim=1, keepdim=True) + noise
    xs, ys = x.split(sizes), y.split(sizes)
    return RegressionData(xs[0], ys[0], xs[1], ys[1], xs[2], ys[2])
