"""Report the best regularizers of a study: `python -m search.report --study-name cifar`.

Writes report.md, report.json and PNG figures, re-trains the best configuration and the
baselines with fresh seeds, and saves the key findings into the study for optuna-dashboard.
"""

import argparse
import functools
import json
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import optuna
import optuna_dashboard
from optuna.trial import FrozenTrial

from models.cifar_data import DataError
from search.attrs import SOURCE_ATTR
from search.errors import UsageError
from search.fidelity import curves_from_trials, fidelity_table, trust_sentence
from search.flags import ArgumentParser, add_data_flags, non_negative_int, positive_int
from search.interrupts import StopSignals, exit_status
from search.metrics import metric_for
from search.provenance import git_commit
from search.report.ablation import ablation_report
from search.report.markdown import (
    cross_task_rows,
    render_cross_task,
    render_note,
    render_report,
    render_stdout,
)
from search.report.plots import learning_curves_figure, plot_ablation_path, write_plots
from search.report.retraining import Retrainer, rebuild_task
from search.report.robustness import repeat_seeds, seed_robustness
from search.report.summary import space_from_settings, summarize
from search.storage import STORAGE_ERRORS, find_studies, reason, safe_url
from search.study import baseline_name, name_the_metric, stored_settings
from search.task import Task

PROG = "python -m search.report"
DEFAULT_STORAGE = "sqlite:///studies/cifar.db"
CURVES_GRAPH_ID = "regsearch-learning-curves"


@dataclass
class Target:
    study: optuna.Study
    settings: dict
    out: Path
    source: dict | None = None  # a task file's (search/task_file.py)


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
        help="seeds to re-train the best configuration and the baselines with (0: skip)",
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


def output_folder(template: str, study: str, several: bool) -> Path:
    if "{study}" in template:
        return Path(template.replace("{study}", study))
    return Path(template) / study if several else Path(template)


def prepare_folder(path: Path) -> None:
    """Make `path` and prove it writable now, before minutes of re-training."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise UsageError(
            f"cannot write the report to {path}: {error.strerror}; pick another --out"
        ) from None


def labelled_trials(study: optuna.Study, best_number: int) -> dict[str, FrozenTrial]:
    """Best trial and baseline trials with learning curves, by the label the figures use."""
    trials = study.get_trials(deepcopy=False)
    labelled = {f"best (trial {best_number})": trials[best_number]}
    for trial in trials:
        name = baseline_name(trial)
        if name and trial.intermediate_values and trial.number != best_number:
            labelled[name] = trial
    return labelled


def report_study(target: Target, args: argparse.Namespace, task: Task | None = None) -> dict:
    """Write the report of one study; `task` re-trains (default: rebuilt from the study)."""
    study, settings = target.study, target.settings
    if task is None and args.repeats:
        task = rebuild_task(settings, args.device, args.data, args.cache_dir, target.source)
    expected = list(task.baselines) if task else []
    try:
        report = summarize(study, settings, expected)
    except ValueError as error:
        raise UsageError(f"{error}: run more trials before reporting") from None
    trials = study.get_trials(deepcopy=False)
    fidelity = fidelity_table(curves_from_trials(trials), int(settings["epochs"]))
    report["fidelity"] = {"rows": fidelity, "sentence": trust_sentence(fidelity)}
    if task is not None:
        retrain(task, report, target, args)
    labelled = labelled_trials(study, report["best"]["number"])
    report["plots"] = write_plots(
        study.get_trials(deepcopy=False),
        report["importances"],
        report["importance_reliability"],
        labelled,
        space_from_settings(settings),
        target.out,
    )
    if report.get("ablation") and report["ablation"]["path"]:
        path = plot_ablation_path(
            report["ablation"]["path"], metric_for(settings).key, target.out / "ablation_path.png"
        )
        report["plots"]["ablation_path"] = path
    report["made_at"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    report["commit"] = git_commit()
    report["refresh"] = f"{PROG} --storage {storage_url(study)} --study-name {study.study_name}"
    (target.out / "report.md").write_text(render_report(report))
    (target.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    save_to_dashboard(study, report, labelled)
    return report


def retrain(task: Task, report: dict, target: Target, args: argparse.Namespace) -> None:
    """Seed robustness and ablation, in one parallel re-trainer whose results are kept in the
    report folder, so that an interrupted report trains only what it lacks when run again."""
    metric = metric_for(target.settings)
    seeds = repeat_seeds(target.settings["seed"], args.repeats)
    with Retrainer(
        task,
        functools.partial(
            rebuild_task, target.settings, args.device, args.data, args.cache_dir, target.source
        ),
        metric.key,
        seeds,
        target.out / "retrained.json",
        args.jobs,
    ) as retrainer:
        best = report["best"]["params"]
        robustness = seed_robustness(retrainer.measure, best, task.baselines, seeds, metric)
        report["robustness"] = robustness
        if not args.no_ablation:
            best_run = robustness["runs"]["best"]
            report["ablation"] = ablation_report(
                retrainer.measure, best, best_run, task.space, metric, args.ablation_path
            )


def storage_url(study: optuna.Study) -> str:
    """The study's database URL, password masked: it goes into the note and report.json."""
    storage = getattr(study._storage, "_backend", study._storage)
    return safe_url(storage.url)


def save_to_dashboard(study: optuna.Study, report: dict, labelled: dict[str, FrozenTrial]) -> None:
    """Write the note and the learning-curve graph into the study, if it may be written.

    A read-only database (a colleague's study, a file this user may only read) still gets its
    report files; only the dashboard's copy is skipped, with one line saying why.
    """
    finished = sum(report["counts"].values())
    stamp = f"{finished} finished trials, {report['made_at']}"
    try:
        if study.metric_names is None:
            name_the_metric(study)
        optuna_dashboard.save_note(study, render_note(report))
        optuna_dashboard.save_plotly_graph_object(
            study, learning_curves_figure(labelled, stamp), graph_object_id=CURVES_GRAPH_ID
        )
    except STORAGE_ERRORS as error:
        print(
            f"{PROG}: dashboard note and graph not saved: cannot write to the study database "
            f"({reason(error)}); the report files are written",
            file=sys.stderr,
        )


def plan(args: argparse.Namespace) -> list[Target]:
    """Check every input before anything is trained or written."""
    studies = find_studies(args.storage or [DEFAULT_STORAGE], None if args.all else args.study_name)
    if not args.all and not args.study_name and len(studies) > 1:
        names = ", ".join(study.study_name for study in studies)
        raise UsageError(
            f"the database(s) hold {len(studies)} studies ({names}): name one with "
            "--study-name NAME, or pass --all"
        )
    targets = []
    for study in studies:
        settings = stored_settings(study)
        out = output_folder(args.out, study.study_name, len(studies) > 1)
        targets.append(Target(study, settings, out, study.user_attrs.get(SOURCE_ATTR)))
    for target in targets:
        prepare_folder(target.out)
    return targets


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    stop = StopSignals()
    try:
        # Every re-trained run is saved as it finishes (retrained.json): a stop loses nothing.
        with stop.installed():
            targets = plan(args)
            reports = []
            for target in targets:
                reports.append(report_study(target, args))
                print(render_stdout(reports[-1]))
                print(f"report: {target.out / 'report.md'}")
    except (UsageError, DataError) as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted ({stop.name})", file=sys.stderr)
        return exit_status(stop.signum or signal.SIGINT)
    if len(reports) > 1:
        folder = Path(os.path.commonpath([t.out for t in targets]))
        rows = cross_task_rows(reports)
        (folder / "summary.md").write_text(render_cross_task(rows))
        (folder / "summary.json").write_text(json.dumps(rows, indent=2) + "\n")
        print(render_cross_task(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
