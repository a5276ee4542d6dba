"""Imports point down: the report and the study tools never load a CLI or the workers, and the
product never loads the measurement tools of search/tools/."""

import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.search.conftest import OLD_NAMES

UPPER = ("search.cli", "search.workers", "search.cifar", "search.linear")
READERS = (
    "search.report.__main__",
    "search.report.reporting",
    "search.report.summary",
    "search.report.markdown",
    "search.report.plots",
    "search.report.robustness",
    "search.report.ablation",
    "search.report.retraining",
    "search.tools.replay",
    "search.dashboard",
    "search.tasks.cifar",
    "search.tasks.linear",
    "search.spec",
    "search.task_file",
)


@pytest.mark.parametrize("module", READERS)
def test_a_reader_imports_no_cli_module_and_no_workers(module):
    code = (
        f"import importlib, sys; importlib.import_module({module!r}); "
        f"print(' '.join(name for name in {UPPER!r} if name in sys.modules))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "", f"{module} imports {run.stdout.strip()}"


def test_the_product_imports_no_measurement_tool():
    # Every module outside search/tools/ at once: a tool one of them loads shows in sys.modules.
    # The tools' old command names only run them (test_main checks it).
    package = ROOT / "search"
    modules = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for path in package.rglob("*.py")
        if "tools" not in path.relative_to(package).parts[:1]
    }
    product = sorted(modules - set(OLD_NAMES))
    code = (
        f"import importlib, sys; [importlib.import_module(m) for m in {product!r}]; "
        "print(' '.join(name for name in sys.modules if name.startswith('search.tools')))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "", f"the product imports {run.stdout.strip()}"
