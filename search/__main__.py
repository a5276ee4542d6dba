"""Every regsearch command behind one entry: `python -m search COMMAND` or `regsearch COMMAND`.

`regsearch cifar --trials 50` runs `python -m search.cifar --trials 50`, and so on; a command's
module is imported only when it is run, so the list below shows at once.
"""

import importlib
import os
import sys
from collections.abc import Sequence

# command: (its module, what it does)
COMMANDS = {
    "cifar": ("search.cifar", "search the regularizers of the CIFAR-10 CNN"),
    "linear": ("search.linear", "search the regularizers of the overfitting linear task"),
    "run": ("search.run", "search the regularizers of your own task (--task file.py:function)"),
    "report": ("search.report.__main__", "report which regularizers won a study, how reliably"),
    "dashboard": ("search.dashboard", "serve optuna-dashboard on a study database"),
    "bench": ("search.tools.bench", "measure the project's speed on this machine"),
    "replay": ("search.tools.replay", "replay pruners over a finished search's learning curves"),
    "simulate": ("search.tools.simulate", "simulated searches over a curve bank"),
    "bank": ("search.tools.bank", "build or extend a curve bank of unpruned CIFAR-10 runs"),
    "fidelity": ("search.tools.fidelity", "how far a study's early epochs can be trusted"),
    "scale": ("search.tools.scale", "what a worker adds around a trial as the study grows"),
}


def _prog() -> str:
    return "regsearch" if os.path.basename(sys.argv[0]) == "regsearch" else "python -m search"


def usage() -> str:
    prog = _prog()
    lines = [f"usage: {prog} COMMAND [flags]   ({prog} COMMAND --help: its flags)", ""]
    lines += [f"  {name:10s} {what}" for name, (_, what) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0
    name, *rest = args
    if name not in COMMANDS:
        print(
            f"{_prog()}: error: unknown command {name!r}: choose one of {', '.join(COMMANDS)} "
            "(see --help)",
            file=sys.stderr,
        )
        return 2
    return importlib.import_module(COMMANDS[name][0]).main(rest)


if __name__ == "__main__":
    raise SystemExit(main())
