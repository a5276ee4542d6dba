"""The early-epoch trust table of a study or a curve bank: `python -m search.tools.fidelity`.

The report shows the same table for every study (search/fidelity.py computes it); this command
also reads a curve bank (search/tools/bank.py), to judge a pruner before any search runs.
"""

import sys
from collections.abc import Sequence

import optuna

from search.errors import UsageError
from search.fidelity import (
    Curve,
    curves_from_trials,
    fidelity_table,
    format_fidelity,
    trust_sentence,
)
from search.flags import ArgumentParser
from search.storage import find_studies
from search.study import stored_settings
from search.tools.bank import read_bank

PROG = "python -m search.tools.fidelity"


def curves_from_bank(records: Sequence[dict]) -> list[Curve]:
    """A curve bank's runs (search/tools/bank.py) as curves, final = their best validation loss."""
    return [
        Curve(r["params"], r["val_loss"], min(r["val_loss"]))
        for r in records
        if r["val_loss"] and not r["diverged"]
    ]


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog=PROG,
        description="How far early epochs can be trusted: Kendall's tau between each epoch's "
        "validation loss and the final one, over a study's completed trials or a curve bank.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--bank", help="a curve bank recorded by search.tools.bank")
    source.add_argument("--storage", help="study database URL (with --study-name)")
    parser.add_argument("--study-name", default="cifar", help="study to read from --storage")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        if args.bank:
            curves = curves_from_bank(read_bank(args.bank))
            epochs = max((len(c.values) for c in curves), default=0)
            source = args.bank
        else:
            study = find_studies([args.storage], [args.study_name])[0]
            epochs = int(stored_settings(study)["epochs"])
            curves = curves_from_trials(study.get_trials(deepcopy=False))
            source = f"study {study.study_name!r}"
    except UsageError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    rows = fidelity_table(curves, epochs)
    print(f"{source}: {len(curves)} complete curves")
    print("\n".join(format_fidelity(rows)))
    print(trust_sentence(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
