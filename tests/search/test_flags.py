import importlib
import re

import pytest

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
