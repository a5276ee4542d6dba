"""The activation functions a model can be built with, by name."""

from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}
# Non-decreasing ones, for which max(f(a), f(b)) == f(max(a, b)); GELU dips below 0 near -0.75.
MONOTONE = frozenset({"relu", "leaky_relu", "elu", "tanh", "sigmoid"})


def make_activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        known = ", ".join(ACTIVATIONS)
        raise ValueError(f"unknown activation {name!r}: choose one of {known}") from None
