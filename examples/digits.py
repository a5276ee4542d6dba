"""Handwritten digits (scikit-learn's bundled 8x8 images) with a small MLP: a task file.

    pip install -e '.[examples]'   # scikit-learn, whose install ships the data: no download
    python -m search.run --task examples/digits.py:build_task --trials 50

1,797 images of the digits 0-9, 8x8 pixels of 0-16; split 1,000 train / 397 validation /
400 test, stratified and fixed (seed 0). The walk-through: docs/own-model.md.
"""

import torch
from torch import nn

from search import Regularizers, TaskSpec, make_activation

try:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
except ImportError:
    raise ImportError(
        "the digits example needs scikit-learn: pip install -e '.[examples]'"
    ) from None


class DigitsMLP(nn.Module):
    """64 → 128 → 128 → 10; each hidden layer: Linear, the activation, dropout."""

    def __init__(self, dropout: float, activation: str) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(64, 128),
            make_activation(activation),
            nn.Dropout(dropout),
            nn.Linear(128, 128),
            make_activation(activation),
            nn.Dropout(dropout),
            nn.Linear(128, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build_model(reg: Regularizers) -> DigitsMLP:
    """A fresh network with the trial's dropout rate and activation."""
    return DigitsMLP(reg.dropout, reg.activation)


def build_task() -> TaskSpec:
    images, labels = load_digits(return_X_y=True)
    images = images / 16.0  # pixels 0-16 → [0, 1]
    x_train, x_rest, y_train, y_rest = train_test_split(
        images, labels, train_size=1000, stratify=labels, random_state=0
    )
    x_val, x_test, y_val, y_test = train_test_split(
        x_rest, y_rest, test_size=400, stratify=y_rest, random_state=0
    )
    return TaskSpec(
        name="digits",
        train=(x_train, y_train),
        val=(x_val, y_val),
        test=(x_test, y_test),
        build_model=build_model,
        loss="cross_entropy",
        optimizer="adam",
        lr=1e-3,
        batch_size=32,
        epochs=30,
        dropout=(0.0, 0.6),
        weight_decay=(1e-6, 1e-1),
        l1=(1e-7, 1e-3),
        activations=("relu", "gelu", "tanh", "elu"),
        baselines={"reference (dropout 0.2)": {"dropout": 0.2}},
    )
