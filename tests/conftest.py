import os
import subprocess
import sys
from pathlib import Path

import pytest

from search.tools.protocols import protocol_flags

ROOT = Path(__file__).resolve().parents[1]
SHARED_CIFAR = ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
# The smallest CIFAR-10 search that still trains and tests for real: seconds, not hours.
TINY_CIFAR_SEARCH = ("--trials", "3", *protocol_flags("cifar-tiny"))


def project_env(env: dict | None = None) -> dict:
    """This process's environment with the project importable, updated by `env`."""
    # Prepended, not replacing: the caller's PYTHONPATH may be where its packages are.
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **(env or {})}


def run_module(module: str, *args: str, cwd: Path, env: dict | None = None, timeout: float = 600):
    """Run `python -m module args` as a user would, from `cwd`, with the project importable."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=project_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def cifar_archive() -> Path:
    """The shared CIFAR-10 archive (or $CIFAR10_ROOT); tests that need real images skip without."""
    path = Path(os.environ.get("CIFAR10_ROOT", SHARED_CIFAR))
    if not path.exists():
        pytest.skip(f"real CIFAR-10 not found at {path}: set CIFAR10_ROOT")
    return path


@pytest.fixture
def cifar_cache() -> Path:
    """One decoded-image cache for the whole suite: decoding 60,000 JPEGs again per test is slow."""
    return ROOT / "studies" / "cache"
