import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from search.__main__ import COMMANDS
from tests.conftest import run_module
from tests.search.conftest import OLD_NAMES

REGSEARCH = Path(sys.executable).parent / "regsearch"  # installed by pip install -e .


def test_python_m_search_lists_every_command(tmp_path):
    run = run_module("search", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("usage: python -m search COMMAND")
    for name in COMMANDS:
        assert f"\n  {name} " in run.stdout


def _runnable_modules() -> set[str]:
    # A module users run as `python -m search...` has a __main__ guard.
    root = Path(__file__).parents[2]
    return {
        ".".join(path.relative_to(root).with_suffix("").parts)
        for path in (root / "search").rglob("*.py")
        if '\nif __name__ == "__main__":' in path.read_text()
    } - {"search.__main__"}


def test_every_runnable_module_is_a_command_or_an_old_name_of_one():
    listed = {module for module, _ in COMMANDS.values()}
    runnable = _runnable_modules()
    assert listed <= runnable, f"listed, not runnable: {sorted(listed - runnable)}"
    unlisted = sorted(runnable - listed)
    assert unlisted == sorted(OLD_NAMES), f"runnable, not a command: {unlisted}"
    for old, new in OLD_NAMES.items():
        assert new in listed
        assert importlib.import_module(old).main is importlib.import_module(new).main


@pytest.mark.parametrize("old", OLD_NAMES)
def test_an_old_command_name_still_runs_the_tool(tmp_path, old):
    run = run_module(old, "--help", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"usage: python -m {OLD_NAMES[old]} ")


def test_a_command_runs_its_module_with_the_rest_of_the_flags(tmp_path):
    db = tmp_path / "l.db"
    run = run_module(
        "search", "linear", "--trials", "1", "--epochs", "2", "--storage", f"sqlite:///{db}",
        cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "study 'linear': 0 finished trials, running 1 more" in run.stdout


def test_an_unknown_command_is_one_line_and_exit_2(tmp_path):
    run = run_module("search", "serach", cwd=tmp_path)
    assert run.returncode == 2
    assert run.stderr == (
        f"python -m search: error: unknown command 'serach': choose one of "
        f"{', '.join(COMMANDS)} (see --help)\n"
    )


def test_the_regsearch_command_dispatches_to_each_module(tmp_path):
    listing = subprocess.run([REGSEARCH], capture_output=True, text=True, cwd=tmp_path)
    assert listing.returncode == 0 and listing.stdout.startswith("usage: regsearch COMMAND")
    help_ = subprocess.run([REGSEARCH, "report", "--help"], capture_output=True, text=True)
    assert help_.returncode == 0 and "--study-name" in help_.stdout
