"""Report the best regularizers of a study, for `python -m search.report` (its flags are there).

Writes report.md, report.json and PNG figures, re-trains the finalists (the trials of lowest
validation loss) and the baselines with fresh seeds, names the finalist of lowest mean validation
loss the best, and saves the key findings into the study for optuna-dashboard.
"""

import argparse
import functools
import json
import os
import signal
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import optuna
import optuna_dashboard
from optuna.trial import FrozenTrial
from sqlalchemy.engine import make_url

from models.cifar_data import DataError
from search.attrs import SOURCE_ATTR
from search.errors import UsageError
from search.fidelity import curves_from_trials, fidelity_table, trust_sentence
from search.interrupts import StopSignals, exit_status
from search.metrics import metric_for
from search.provenance import git_commit
from search.report import DEFAULT_STORAGE, PROG
from search.report.ablation import ablation_report, mattered, reverted_configurations
from search.report.markdown import (
    cross_task_rows,
    render_cross_task,
    render_note,
    render_report,
    render_stdout,
)
from search.report.plots import learning_curves_figure, plot_ablation_path, write_plots
from search.report.retraining import Retrainer, rebuild_task
from search.report.robustness import choose_best, repeat_seeds, seed_robustness
from search.report.summary import finalist_rows, name_best, space_from_settings, summarize
from search.storage import (
    STORAGE_ERRORS,
    database_url,
    find_studies,
    reason,
    safe_url,
    sqlite_path,
)
from search.study import baseline_name, name_the_metric, stored_settings
from search.task import Task

CURVES_GRAPH_ID = "regsearch-learning-curves"


@dataclass
class Target:
    study: optuna.Study
    settings: dict
    out: Path
    source: dict | None = None  # a task file's (search/task_file.py)


def output_folder(template: str, study: str, several: bool) -> Path:
    if "{study}" in template:
        return Path(template.replace("{study}", study))
    return Path(template) / study if several else Path(template)


def database_label(url: str) -> str:
    """A short name for a study's database: its SQLite file's stem or PostgreSQL's database."""
    path = sqlite_path(database_url(url))
    return path.stem if path is not None else str(make_url(database_url(url)).database)


def _reported_storage(out: Path) -> str | None:
    """The database the report already in `out` was made from, if any."""
    try:
        return json.loads((out / "report.json").read_text()).get("storage")
    except (OSError, ValueError):
        return None


def _same(url: str, other: str) -> bool:
    """Whether two URLs name one database (an SQLite file given relative and absolute, say)."""
    path, other_path = sqlite_path(database_url(url)), sqlite_path(database_url(other))
    if path is not None and other_path is not None:
        return path.resolve() == other_path.resolve()
    return url == other


def output_folders(template: str, studies: list[optuna.Study]) -> list[Path]:
    """Each study's report folder; none shared, none holding another database's report.

    A study name alone is ambiguous when two databases hold it (or a report of another
    database's study of that name is already there): such a study's folder gets its database's
    name, `studies/<database>-<study>-report/`, so that no report overwrites another.
    """
    several = len(studies) > 1
    plain = [output_folder(template, s.study_name, several) for s in studies]
    folders = []
    for study, folder in zip(studies, plain, strict=True):
        url = storage_url(study)
        reported = _reported_storage(folder)
        if plain.count(folder) > 1 or (reported is not None and not _same(reported, url)):
            name = f"{database_label(url)}-{study.study_name}"
            folder = output_folder(template, name, several)
        folders.append(folder)
    for i, folder in enumerate(folders):
        if folders.count(folder) > 1:  # two databases with one file name: number them
            folders[i] = folder.with_name(f"{folder.name}-{i + 1}")
    return folders


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
    finalists = finalist_rows(study, settings, args.finalists)
    if task is not None:
        retrain(task, report, finalists, target, args)
    else:
        keep_retraining(report, finalists, target.out)
    labelled = labelled_trials(study, report["best"]["number"])
    report["plots"] = write_plots(
        study.get_trials(deepcopy=False),
        report["importances"],
        report["importance_reliability"],
        labelled,
        space_from_settings(settings),
        target.out,
        mattered(report.get("ablation")),
    )
    if report.get("ablation") and report["ablation"]["path"]:
        path = plot_ablation_path(
            report["ablation"]["path"], metric_for(settings).key, target.out / "ablation_path.png"
        )
        report["plots"]["ablation_path"] = path
    report["made_at"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    report["commit"] = git_commit()
    report["storage"] = storage_url(study)
    report["refresh"] = f"{PROG} --storage {report['storage']} --study-name {study.study_name}"
    (target.out / "report.md").write_text(render_report(report))
    (target.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    save_to_dashboard(study, report, labelled)
    return report


def retrain(
    task: Task, report: dict, finalists: list[dict], target: Target, args: argparse.Namespace
) -> None:
    """The finalists, seed robustness and ablation, in one parallel re-trainer whose results are
    kept in the report folder, so that an interrupted report trains only what it lacks when run
    again."""
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
        retrainer.expect([*(row["params"] for row in finalists), *task.baselines.values()])
        if len(finalists) > 1:
            report["finalists"] = choose_best(retrainer.measure, finalists)
            name_best(report, finalists[report["finalists"]["chosen"]])
        best = report["best"]["params"]
        if not args.no_ablation and len(seeds) > 1:
            retrainer.expect(reverted_configurations(best, task.space))
        robustness = seed_robustness(retrainer.measure, best, task.baselines, seeds, metric)
        report["robustness"] = robustness
        if args.no_ablation:
            report["ablation_skipped"] = "`--no-ablation`"
        elif len(seeds) < 2:
            # Checked before training it: one seed cannot tell an effect from seed noise.
            report["ablation_skipped"] = (
                "`--repeats 1`: telling a regularizer's effect from seed noise takes 2 or more "
                "seeds"
            )
        else:
            best_run = robustness["runs"]["best"]
            report["ablation"] = ablation_report(
                retrainer.measure, best, best_run, task.space, metric, args.ablation_path
            )


def keep_retraining(report: dict, finalists: list[dict], out: Path) -> None:
    """Under `--repeats 0`, keep the re-training of the report already in `out`, if it is of the
    same finalists (or best configuration) and settings: a report that trains nothing must not
    replace earlier seeds' results with "Skipped", nor their choice of the best."""
    try:
        earlier = json.loads((out / "report.json").read_text())
    except (OSError, ValueError):
        return
    if "robustness" not in earlier or earlier.get("settings") != report["settings"]:
        return _retraining_outdated(report, earlier)
    chosen = earlier.get("finalists", {}).get("chosen")
    numbers = [row["trial"]["number"] for row in earlier.get("finalists", {}).get("rows", [])]
    if chosen is not None and numbers == [row["number"] for row in finalists]:
        name_best(report, finalists[chosen])  # the same finalists: the same choice
    if earlier["best"]["params"] != report["best"]["params"]:
        return _retraining_outdated(report, earlier)
    report["retrained_at"] = earlier.get("retrained_at", earlier["made_at"])
    for section in ("finalists", "robustness", "ablation", "ablation_skipped"):
        if section in earlier:
            report[section] = earlier[section]


def _retraining_outdated(report: dict, earlier: dict) -> None:
    if "robustness" in earlier:
        report["earlier_retraining"] = (
            f"the report of {earlier['made_at']} re-trained trial {earlier['best']['number']}, "
            "no longer the best: pass --repeats to re-train this one"
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
    for study, out in zip(studies, output_folders(args.out, studies), strict=True):
        settings = stored_settings(study)
        targets.append(Target(study, settings, out, study.user_attrs.get(SOURCE_ATTR)))
    for target in targets:
        prepare_folder(target.out)
    return targets


def run(args: argparse.Namespace) -> int:
    """Report the studies the parsed flags of `python -m search.report` name; the exit status.

    Bad input is one line on stderr and 2; a stop signal one line and 130 or 143.
    """
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
