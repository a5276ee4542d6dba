import importlib
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT

CLIS = ("cifar", "dashboard", "linear", "report.__main__", "run")
CLIS += tuple(
    f"tools.{tool}" for tool in ("bank", "bench", "fidelity", "replay", "scale", "simulate")
)


@pytest.mark.parametrize("cli", CLIS)
def test_help_shows_every_default_once_and_no_empty_ones(cli):
    parser = importlib.import_module(f"search.{cli}").build_parser()
    blocks = re.split(r"\n  (?=-)", parser.format_help())  # one block per flag
    for action in parser._actions:
        if not action.option_strings or action.help == "==SUPPRESS==":
            continue
        name = re.escape(", ".join(action.option_strings))
        (block,) = [b for b in blocks if re.match(rf"{name}(\s|$)", b)]
        block = " ".join(block.split())
        shown = re.findall(r"\(default: ([^)]*)\)", block)
        nothing_to_show = action.default is None or action.nargs == 0  # or a switch
        if nothing_to_show and "(default:" not in action.help:
            assert shown == [], block
        else:
            assert len(shown) == 1, block


@pytest.mark.parametrize("cli", ("cifar", "linear", "run", "report.__main__", "dashboard"))
@pytest.mark.parametrize("argv", (["--help"], ["--no-such-flag"]), ids=["help", "bad-flag"])
def test_help_and_a_bad_flag_answer_before_torch_is_imported(cli, argv):
    """torch and optuna-dashboard took 3-5 s to import before a command read its flags."""
    code = (
        f"import importlib, sys\nmain = importlib.import_module('search.{cli}').main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "print(' '.join(m for m in ('torch', 'optuna_dashboard') if m in sys.modules))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1] == "", f"search.{cli} {argv[0]} imports {run.stdout}"


def test_a_ctrl_c_while_the_search_imports_is_one_line_and_exit_130(tmp_path, monkeypatch, capsys):
    """A Ctrl-C during torch's seconds of import printed a KeyboardInterrupt traceback."""
    from search.flags import run_after_flags
    from search.linear import build_parser

    # What a Ctrl-C during the task module's import raises there.
    (tmp_path / "interrupted_task.py").write_text("raise KeyboardInterrupt\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    parser = build_parser()
    storage = tmp_path / "never.db"
    args = parser.parse_args(["--storage", f"sqlite:///{storage}"])
    assert run_after_flags(parser, args, "interrupted_task") == 130
    assert capsys.readouterr().err == (
        "python -m search.linear: interrupted (Ctrl-C) while starting: nothing was written\n"
    )
    assert not storage.exists()
