import subprocess
import sys
import textwrap

import pytest

from search.memory import keep_freed_memory

# Trains a few CIFAR-10 CNN steps, then prints the page faults of 20 more.
COUNT_FAULTS = textwrap.dedent(
    """
    import resource, sys, torch
    import torch.nn.functional as F
    from models.cnn import CifarCNN
    from search.memory import keep_freed_memory
    if sys.argv[1] == "tuned":
        assert keep_freed_memory()
    torch.manual_seed(0)
    model = CifarCNN()
    optimizer = torch.optim.Adam(model.parameters())
    x, y = torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))
    def step():
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    for _ in range(5):
        step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        step()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """
)


def faults_per_step(mode: str) -> float:
    done = subprocess.run(
        [sys.executable, "-c", COUNT_FAULTS, mode], capture_output=True, text=True, check=True
    )
    return int(done.stdout) / 20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_training_steps_reuse_their_pages():
    assert keep_freed_memory()
    # A step's activations take over 2,000 pages, which the default allocator faults in afresh
    # every step; reused pages leave a handful. Compared in the same run, because some
    # machines add faults of their own: a kernel memory monitor paging out idle pages (DAMON
    # on the AMD machines) adds bursts of 256 faults now and then, up to ~100 a step here.
    default, tuned = faults_per_step("default"), faults_per_step("tuned")
    assert default > 1000
    assert tuned < default / 10
