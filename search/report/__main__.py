"""Report the best regularizers of a study: `python -m search.report --study-name cifar`.

The flags are here; search/report/reporting.py writes the report.
"""

from collections.abc import Sequence

from search.flags import ArgumentParser, add_data_flags, non_negative_int, positive_int
from search.report import DEFAULT_STORAGE, PROG


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog=PROG,
        description="Report which regularizers won a study, by how much and how reliably; "
        "saves the findings into the study for optuna-dashboard too.",
    )
    add = parser.add_argument
    add(
        "--storage",
        action="append",
        help=f"study database URL; repeat for several databases (default: {DEFAULT_STORAGE})",
    )
    add(
        "--study-name",
        action="append",
        help="study to report; repeat for several (default: the database's only study)",
    )
    add("--all", action="store_true", help="report every study in the database(s)")
    add(
        "--repeats",
        type=non_negative_int,
        default=3,
        help="seeds to re-train the finalists and the baselines with (0: skip)",
    )
    add(
        "--finalists",
        type=positive_int,
        default=3,
        help="trials of lowest validation loss re-trained over the seeds; the best is the one "
        "of lowest mean validation loss (1: the search's best trial)",
    )
    add(
        "--out",
        default="studies/{study}-report",
        help="report folder; {study} becomes the study name (without it, several studies go "
        "into <out>/<study>/)",
    )
    ablation = parser.add_mutually_exclusive_group()
    ablation.add_argument(
        "--no-ablation",
        action="store_true",
        help="skip the ablation (each regularizer of the best reverted alone, over the seeds)",
    )
    ablation.add_argument(
        "--ablation-path",
        action="store_true",
        help="also the greedy path from the reference configuration to the best (costs more)",
    )
    add(
        "--jobs",
        type=positive_int,
        default=1,
        help="worker processes for the re-training, sharing the CPU threads",
    )
    add_data_flags(parser)
    add("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where to re-train")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Imported once the flags are read: torch and optuna-dashboard take seconds to import, and
    # --help or a wrong flag needs neither.
    from search.report.reporting import run

    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
