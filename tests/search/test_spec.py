"""TaskSpec: a user's task turned into what the search trains, and every mistake as one line."""

from dataclasses import replace

import optuna
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from models.activations import make_activation
from search import linear as linear_command
from search.errors import UsageError
from search.objective import make_objective
from search.spec import TaskSpec
from search.tasks import linear

CPU = torch.device("cpu")


class MLP(nn.Module):
    def __init__(self, dropout: float = 0.0, activation: str = "relu", outputs: int = 3):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(4, 16),
            make_activation(activation),
            nn.Dropout(dropout),
            nn.Linear(16, outputs),
        )

    def forward(self, x):
        return self.net(x)


def split(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    return x, (x[:, 0] > 0).long() + (x[:, 1] > 0).long()  # 3 classes


def spec(**changes) -> TaskSpec:
    base = TaskSpec(
        "toy",
        train=split(64, 0),
        val=split(32, 1),
        test=split(32, 2),
        build_model=lambda reg: MLP(reg.dropout, reg.activation),
        epochs=3,
        activations=("relu", "tanh"),
        baselines={"reference (dropout 0.25)": {"dropout": 0.25}},
    )
    return replace(base, **changes)


def sequential_spec(**changes) -> TaskSpec:
    """The toy task with its MLP as a bare nn.Sequential of 100 parameters: fused training runs
    it, 4 trials at once on a CPU by default (search/fused_worker.py)."""
    return spec(build_model=lambda reg: MLP(reg.dropout, reg.activation).net, **changes)


def prepare(task_spec: TaskSpec):
    return task_spec.prepare(CPU, seed=0, warmup_epochs=1)


def test_a_spec_becomes_a_task_with_its_settings_space_and_baselines():
    task = prepare(spec())
    assert task.settings["task"] == "toy" and task.settings["loss"] == "cross_entropy"
    assert task.settings["split_sizes"] == [64, 32, 32]
    assert task.space.patience == (1, 3)  # "auto": up to the epochs, the top meaning off
    assert list(task.baselines) == ["no regularization", "reference (dropout 0.25)"]
    assert task.baselines["reference (dropout 0.25)"]["dropout"] == 0.25
    assert task.baselines["no regularization"]["weight_decay"] == 1e-6  # the off end
    assert task.metric.key == "test_accuracy"
    study = optuna.create_study()
    study.optimize(make_objective(task, 0), n_trials=2)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


def test_a_model_without_dropout_searches_none_and_fixed_values_apply():
    task = prepare(
        spec(
            build_model=lambda reg: MLP(0.0, reg.activation),
            dropout=None,
            weight_decay=1e-4,
            l1=None,
            patience=None,
            baselines={},
        )
    )
    assert task.space.searched == ("activation",)
    reg = task.space.regularizers({"activation": "tanh"})
    assert (reg.dropout, reg.weight_decay, reg.l1, reg.patience) == (0.0, 1e-4, 0.0, None)


def test_the_start_design_covers_only_what_is_searched():
    model = lambda reg: MLP(0.0, reg.activation)  # noqa: E731
    task = prepare(spec(dropout=None, l1=None, build_model=model, baselines={}))
    design = task.space.start_design(4, seed=0)
    assert [sorted(params) for params in design] == [["activation", "patience", "weight_decay"]] * 4
    assert sorted(params["activation"] for params in design) == ["relu", "relu", "tanh", "tanh"]


def test_one_epoch_leaves_early_stopping_one_value_that_means_off():
    task = prepare(spec(epochs=1))
    assert task.space.patience == (1, 1)
    assert task.space.regularizers(task.baselines["no regularization"]).patience is None


def test_a_dataset_is_read_into_tensors_once():
    class Pairs(Dataset):
        def __init__(self, n, seed):
            self.x, self.y = split(n, seed)

        def __len__(self):
            return len(self.y)

        def __getitem__(self, i):
            return self.x[i].numpy(), int(self.y[i])

    task = prepare(spec(train=Pairs(64, 0), val=Pairs(32, 1)))
    assert torch.equal(task.data.train.inputs, split(64, 0)[0])
    assert task.data.train.targets.dtype == torch.long


def test_float64_inputs_become_float32():
    x, y = split(64, 0)
    task = prepare(spec(train=(x.double().numpy(), y.numpy())))
    assert task.data.train.inputs.dtype == torch.float32


class Huge(Dataset):
    def __len__(self):
        return 10**12

    def __getitem__(self, i):
        return torch.zeros(4), 0


def _nan_inputs():
    x, y = split(64, 0)
    x[3, 1] = float("nan")
    return x, y


def _rejects_tanh(reg):
    if reg.activation != "relu":
        raise ValueError(f"only relu, not {reg.activation}")
    return MLP(reg.dropout)


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"train": (torch.zeros(64, 4), torch.zeros(63, dtype=torch.long))}, "64 inputs but 63"),
        ({"val": (torch.zeros(32, 5), torch.zeros(32, dtype=torch.long))}, "val inputs have shape"),
        ({"train": (torch.zeros(64, 4), torch.full((64,), 3))}, "labels run from 3 to 3"),
        ({"test": (torch.zeros(32, 4), torch.full((32,), -1))}, "labels run from -1"),
        ({"train": (torch.zeros(64, 4), torch.zeros(64))}, "cross-entropy needs class indices"),
        ({"train": _nan_inputs()}, "train inputs hold 1 NaN or infinite"),
        ({"train": Huge()}, "train data: 1,000,000,000,000 samples of [4] torch.float32 need"),
        ({"train": [1, 2, 3]}, "give (inputs, targets) or a torch.utils.data.Dataset"),
        ({"build_model": lambda reg: MLP(0.0, reg.activation)}, "ignores the dropout rate"),
        ({"build_model": lambda reg: MLP(reg.dropout)}, "ignores the activation"),
        ({"build_model": _rejects_tanh}, "raised ValueError: only relu, not tanh"),
        ({"build_model": lambda reg: nn.Linear(5, 3)}, "raised RuntimeError: mat1 and mat2"),
        ({"build_model": lambda reg: "a model"}, "returned str, not a torch nn.Module"),
        ({"build_model": lambda reg: MLP(reg.dropout, reg.activation, 1)}, "[N, classes]"),
        ({"build_model": lambda reg: MLP(reg.dropout, reg.activation, 2)}, "outputs 2 classes"),
        ({"loss": "mse"}, "MSE needs the same shape"),
        ({"loss": "hinge"}, "loss 'hinge': choose one of cross_entropy, mse"),
        ({"epochs": 0}, "epochs 0: give a whole number >= 1"),
        ({"dropout": (0.5, 0.1)}, "dropout range (0.5, 0.1): its low end is above its high end"),
        ({"weight_decay": (1e-2, 1e-5)}, "low end is above its high end"),
        ({"patience": (5, 2)}, "patience range (5, 2): its low end is above its high end"),
        ({"patience": (0, 2)}, "give 1 <= low <= high"),
        ({"dropout": (0.0, 1.0)}, "rates must lie in [0, 1)"),
        ({"l1": (0.0, 1e-3)}, "its low end (which means off) must be > 0"),
        ({"activations": ("relu", "swish")}, "activation 'swish': choose from"),
        (
            {
                "dropout": None,
                "weight_decay": None,
                "l1": 1e-5,
                "patience": None,
                "activations": "gelu",
            },
            "nothing to search",
        ),
        ({"baselines": {"mine": {"l2": 0.1}}}, "baseline 'mine' sets l2, which is not searched"),
        (
            {"baselines": {"mine": {"dropout": 0.9}}},
            "dropout=0.9 lies outside its search range (0.0, 0.5)",
        ),
        ({"baselines": {"mine": {"activation": "elu"}}}, "activation='elu' lies outside"),
    ],
)
def test_each_mistake_is_one_line(changes, says):
    with pytest.raises(UsageError) as error:
        prepare(spec(**changes))
    message = str(error.value)
    assert says in message
    assert "\n" not in message


def test_the_linear_task_stores_the_settings_its_studies_hold():
    """Built on TaskSpec, the built-in task still stores what its existing studies hold, so
    that they resume and their reports re-train."""
    task = linear.task_from_args(linear_command.build_parser().parse_args(["--device", "cpu"]))
    assert task.settings == {
        "task": "linear",
        "epochs": 100,
        "batch_size": 10,
        "optimizer": "sgd",
        "lr": 0.003,
        "seed": 0,
        "split_sizes": [20, 100, 100],
        "hidden": None,
        "warmup_epochs": 10,
        "space": {
            "dropout": [0.0, 0.95],
            "weight_decay": [0.0001, 100.0],
            "l1": [1e-06, 1.0],
            "patience": [1, 100],
            "activations": [],
        },
    }
    assert task.baselines == {
        "no regularization (reference)": {
            "dropout": 0.0,
            "weight_decay": 1e-4,
            "l1": 1e-6,
            "patience": 100,
        }
    }


def test_an_image_folder_of_two_classes_is_a_task(tmp_path):
    from PIL import Image
    from torchvision import datasets, transforms

    g = torch.Generator().manual_seed(0)
    for split in ("train", "val", "test"):
        for label in ("cat", "dog"):
            folder = tmp_path / split / label
            folder.mkdir(parents=True)
            for i in range(4):
                pixels = torch.randint(0, 256, (8, 8, 3), dtype=torch.uint8, generator=g)
                Image.fromarray(pixels.numpy()).save(folder / f"{i}.png")

    def images(split):
        return datasets.ImageFolder(tmp_path / split, transform=transforms.PILToTensor())

    def build_model(reg):
        return nn.Sequential(nn.Flatten(), nn.Dropout(reg.dropout), nn.Linear(3 * 8 * 8, 2))

    task = prepare(
        spec(
            train=images("train"),
            val=images("val"),
            test=images("test"),
            transform=lambda x: x.float() / 255,
            build_model=build_model,
            activations=None,
        )
    )
    assert task.data.train.inputs.dtype == torch.uint8  # kept small; floats per batch
    assert task.data.train.inputs.shape == (8, 3, 8, 8)
    assert task.data.train.targets.tolist() == [0] * 4 + [1] * 4
