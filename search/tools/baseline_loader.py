"""The reference way of training on CIFAR-10 (the original training script's), kept only as the
benchmark's baseline.

It mirrors torchvision's `CIFAR10` data set: the images sit in memory as uint8 HWC arrays and
every sample goes through `PIL.Image.fromarray` → `ToTensor` → `Normalize` in `__getitem__`;
a `DataLoader` (batch 32, shuffled, no worker processes, so it uses the same cores and threads as
the project's loop) collates them, and the loop reads `loss.item()` each batch as that script
did. The model and optimizer are the project's, in the default memory format. The benchmark runs
it in a fresh process, with the default allocator settings that script has (search/memory.py).
"""

import threading
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from models.cnn import CifarCNN

SEED_TRANSFORM = transforms.Compose(
    [transforms.ToTensor(), transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))]
)


class SeedStyleCifar(Dataset):
    """torchvision's CIFAR10 storage and per-sample transform, over given uint8 NCHW images."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.data: np.ndarray = images.permute(0, 2, 3, 1).contiguous().numpy()  # NHWC
        self.targets: list[int] = labels.tolist()

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return SEED_TRANSFORM(Image.fromarray(self.data[index])), self.targets[index]


def reference_images_per_second(
    images: torch.Tensor,
    labels: torch.Tensor,
    steps: int,
    batch_size: int,
    device: torch.device,
    threads: int,
    ready: threading.Barrier,
    warmup_steps: int = 3,
) -> float:
    """Train `steps` batches the reference way (after `warmup_steps` untimed ones); images/second.

    `ready` is waited on after the warm-up, so that processes timed together start together.
    """
    torch.set_num_threads(threads)
    loader = DataLoader(
        SeedStyleCifar(images, labels),
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
        drop_last=True,
    )
    torch.manual_seed(0)
    model = CifarCNN(dropout=0.25).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    done, running_loss, started = 0, 0.0, 0.0
    while done < warmup_steps + steps:
        for inputs, targets in loader:
            if done == warmup_steps:
                ready.wait()
                started = time.perf_counter()
            inputs, targets = inputs.to(device), targets.to(device)
            optimizer.zero_grad()
            loss = F.cross_entropy(model(inputs), targets)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
            done += 1
            if done == warmup_steps + steps:
                break
    return steps * batch_size / (time.perf_counter() - started)
