import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import optuna_dashboard
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from search.report.markdown import (
    reliability_line,
    render_note,
    render_report,
    render_stdout,
)
from search.report.plots import plot_history
from search.report.summary import (
    MIN_RANKING_TRIALS,
    SUBSETS,
    param_importances,
    pruning_saving,
    ranking_reliability,
)
from search.study import BASELINE_ATTR, SETTINGS_ATTR
from tests.conftest import TINY_CIFAR_SEARCH, project_env, run_module

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_report_numbers_match_the_database(reported_study):
    study = optuna.load_study(study_name="linear", storage=reported_study.url)
    report = json.loads((reported_study.out / "report.json").read_text())
    trials = study.trials
    states = [t.state for t in trials]
    assert report["counts"] == {
        "complete": states.count(TrialState.COMPLETE),
        "pruned": states.count(TrialState.PRUNED),
        "fail": states.count(TrialState.FAIL),
    }
    # The finalists are the 3 trials of lowest validation loss; the best is the one of them
    # whose re-trained validation loss is lowest on average, with its own trial's numbers.
    finalists = report["finalists"]["rows"]
    ranked = sorted(study.get_trials(states=[TrialState.COMPLETE]), key=lambda t: t.value)
    assert [r["trial"]["number"] for r in finalists] == [t.number for t in ranked[:3]]
    means = [r["run"]["val_loss_mean"] for r in finalists]
    assert report["finalists"]["chosen"] == means.index(min(means))
    best = trials[finalists[report["finalists"]["chosen"]]["trial"]["number"]]
    assert report["best"]["number"] == best.number and report["best"]["params"] == best.params
    assert report["best"]["test_mse"] == pytest.approx(best.user_attrs["test_mse"])
    assert report["robustness"]["runs"]["best"] == finalists[report["finalists"]["chosen"]]["run"]
    assert [t["number"] for t in report["top"]] == [
        t.number
        for t in sorted(study.get_trials(states=[TrialState.COMPLETE]), key=lambda t: t.value)
    ][:5]
    # Pruning arithmetic: epochs_run summed over all 8 finished trials (none failed) against 8 x 10.
    pruning = report["pruning"]
    run = sum(t.user_attrs["epochs_run"] for t in trials)
    assert pruning["epochs_run"] == run and pruning["epochs_unpruned"] == 80
    assert pruning["saving_percent"] == pytest.approx(100 * (1 - run / 80))
    assert report["importances"] and set(report["importances"]) <= set(study.best_trial.params)

    md = (reported_study.out / "report.md").read_text()
    assert f"Best trial {best.number}:" in md
    assert "chosen among the 3 trials of lowest validation loss by their mean validation loss" in md
    assert f"Epochs trained: {run} of 80" in md
    verdict = report["robustness"]["comparisons"]["no regularization (reference)"]["verdict"]
    assert "| no regularization (reference) |" in md and f"| {verdict} |" in md
    for name in ("history", "importances", "slices", "learning_curves"):
        assert f"![{name}]({name}.png)" in md
        assert (reported_study.out / f"{name}.png").read_bytes()[:8] == PNG_MAGIC
    assert "best trial" in reported_study.stdout and "report:" in reported_study.stdout


def test_failed_trials_do_not_count_as_epochs_saved():
    def trial(state: TrialState, epochs: int, **kwargs) -> optuna.trial.FrozenTrial:
        curve = {epoch: 1.0 for epoch in range(1, epochs + 1)}
        return optuna.trial.create_trial(state=state, intermediate_values=curve, **kwargs)

    trials = [
        trial(TrialState.COMPLETE, 10, value=1.0, user_attrs={"epochs_run": 10}),
        trial(TrialState.PRUNED, 4, user_attrs={"epochs_run": 4}),
        trial(TrialState.COMPLETE, 7, value=1.0),  # no epochs_run attr: its curve counts
        trial(TrialState.FAIL, 2),  # killed after 2 of 10 epochs: not a saving
    ]
    saving = pruning_saving(trials, epochs=10)
    assert saving["epochs_run"] == 21 and saving["epochs_unpruned"] == 30
    assert saving["saving_percent"] == pytest.approx(30.0)
    assert saving["pruned_epochs_saved"] == 6


def trials_where_weight_decay_decides(n: int) -> list[optuna.trial.FrozenTrial]:
    """Complete trials whose loss is set by weight decay alone (dropout adds a little noise)."""
    rng = random.Random(0)
    distributions = {
        "dropout": FloatDistribution(0.0, 0.95),
        "weight_decay": FloatDistribution(1e-4, 100.0, log=True),
    }
    trials = []
    for _ in range(n):
        params = {"dropout": rng.uniform(0.0, 0.95), "weight_decay": 10 ** rng.uniform(-4, 2)}
        loss = abs(math.log10(params["weight_decay"]) - 1) + 0.05 * params["dropout"]
        trials.append(
            optuna.trial.create_trial(value=loss, params=params, distributions=distributions)
        )
    return trials


def test_a_ranking_from_too_few_trials_names_no_winner(reported_study):
    """Too few complete trials, synthetic or the reported study's: PED-ANOVA's top 10% is one
    or two trials, and the ranking changes with the seed."""
    few = trials_where_weight_decay_decides(MIN_RANKING_TRIALS - 1)
    reliability = ranking_reliability(few, param_importances(few)[0])
    assert reliability == {
        "complete_trials": MIN_RANKING_TRIALS - 1,
        "needed": MIN_RANKING_TRIALS,
        "reliable": False,
    }
    assert "not reliable yet" in reliability_line(reliability)
    report = json.loads((reported_study.out / "report.json").read_text())
    assert report["importance_reliability"]["reliable"] is False
    assert report["top_param_effect"] is None
    md = (reported_study.out / "report.md").read_text()
    assert "**Ranking not reliable yet**" in md and "Most important" not in md


def test_above_the_reliable_size_the_ranking_comes_with_its_stability():
    enough = trials_where_weight_decay_decides(MIN_RANKING_TRIALS + 10)
    reliability = ranking_reliability(enough, param_importances(enough)[0])
    assert reliability["reliable"] and reliability["top"] == "weight_decay"
    assert reliability["top_kept"] == reliability["subsets"] == SUBSETS
    assert f"weight_decay stays first in {SUBSETS} of {SUBSETS}" in reliability_line(reliability)


def test_baseline_is_compared_and_gaps_follow_the_attrs(reported_study):
    study = optuna.load_study(study_name="linear", storage=reported_study.url)
    report = json.loads((reported_study.out / "report.json").read_text())
    baseline_trial = next(t for t in study.trials if BASELINE_ATTR in t.user_attrs)
    (row,) = report["baselines"]
    assert (
        row["baseline"] == "no regularization (reference)" == baseline_trial.user_attrs["baseline"]
    )
    if baseline_trial.state == TrialState.COMPLETE:
        attrs = baseline_trial.user_attrs
        assert row["val_gap"] == pytest.approx(baseline_trial.value - attrs["train_loss"])
        assert row["test_gap"] == pytest.approx(attrs["test_mse"] - attrs["train_loss"])
        expected = report["best"]["test_mse"] - attrs["test_mse"]
        assert row["best_minus_baseline"] == pytest.approx(expected)
    else:
        assert row["status"].startswith("pruned")


def test_repeats_give_mean_and_std_over_the_seeds(reported_study):
    robust = json.loads((reported_study.out / "report.json").read_text())["robustness"]
    assert robust["repeats"] == 2 and len(set(robust["seeds"])) == 2
    assert set(robust["runs"]) == {"best", "no regularization (reference)"}
    for run in robust["runs"].values():
        values = run["values"]
        assert len(values) == 2 and all(math.isfinite(v) for v in values)
        assert run["mean"] == pytest.approx(sum(values) / 2)
        assert run["std"] == pytest.approx(abs(values[0] - values[1]) / math.sqrt(2))
    comparison = robust["comparisons"]["no regularization (reference)"]
    best, base = robust["runs"]["best"], robust["runs"]["no regularization (reference)"]
    assert comparison["lead"] == pytest.approx(base["mean"] - best["mean"])  # lower MSE wins
    assert comparison["noise"] == pytest.approx(2 * max(best["std"], base["std"]))
    expected = "best wins" if comparison["lead"] > comparison["noise"] else comparison["verdict"]
    assert comparison["verdict"] == expected


def graph_ids(url: str) -> set[str]:
    """Ids of the plotly figures saved in the study, read as optuna-dashboard reads them."""
    storage = optuna.storages.RDBStorage(url)
    attrs = storage.get_study_system_attrs(storage.get_study_id_from_name("linear"))
    return {k.split(":")[2] for k in attrs if k.startswith("dashboard:plot_data:")}


def test_the_note_and_learning_curves_are_saved_in_the_study(reported_study):
    study = optuna.load_study(study_name="linear", storage=reported_study.url)
    note = optuna_dashboard.get_note(study)
    assert "Best regularizers of `linear`" in note
    assert f"**best** (trial {study.best_trial.number})" in note
    assert graph_ids(reported_study.url) == {"regsearch-learning-curves"}
    assert study.metric_names == ["validation loss"]  # not "Objective 0" in the dashboard


def test_the_note_and_graph_say_which_trials_they_show_and_how_to_refresh(reported_study):
    """A note made mid-search stays in the study while the Best Trial panel moves on."""
    study = optuna.load_study(study_name="linear", storage=reported_study.url)
    made_at = json.loads((reported_study.out / "report.json").read_text())["made_at"]
    stamp = f"Made {made_at} from 8 finished trials ("
    note = optuna_dashboard.get_note(study)
    assert stamp in note and made_at.endswith("UTC")
    refresh = f"python -m search.report --storage {reported_study.url} --study-name linear"
    assert f"To refresh it: `{refresh}`" in note
    storage = optuna.storages.RDBStorage(reported_study.url)
    attrs = storage.get_study_system_attrs(storage.get_study_id_from_name("linear"))
    prefix = "dashboard:plot_data:regsearch-learning-curves:"  # the figure's JSON in chunks
    chunks = sorted(
        (int(k.removeprefix(prefix)), v) for k, v in attrs.items() if k.startswith(prefix)
    )
    title = json.loads("".join(chunk for _, chunk in chunks))["layout"]["title"]["text"]
    assert title.endswith(f"(8 finished trials, {made_at})")
    assert stamp in (reported_study.out / "report.md").read_text()


def test_a_read_only_database_gets_its_report_and_one_line_about_the_note(read_only_copy):
    """A colleague's study this user may only read: report files yes, dashboard note no."""
    before = read_only_copy.folder.joinpath("colleague.db").read_bytes()
    run = read_only_copy.run(
        "search.report", "--storage", read_only_copy.url, "--study-name", "linear",
        "--repeats", "0", "--out", "report",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert (read_only_copy.folder / "report" / "report.md").exists()
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert "dashboard note and graph not saved" in run.stderr and "readonly" in run.stderr
    assert read_only_copy.folder.joinpath("colleague.db").read_bytes() == before


@pytest.mark.slow
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_ctrl_c_while_re_training_is_one_line_and_keeps_what_was_trained(tmp_path, jobs):
    url = f"sqlite:///{tmp_path / 'long.db'}"
    flags = ("--trials", "2", "--epochs", "2000", "--pruner", "none", "--storage", url)
    search = run_module("search.linear", *flags, cwd=tmp_path)
    assert search.returncode == 0, search.stderr
    report = subprocess.Popen(
        [sys.executable, "-m", "search.report", "--storage", url, "--jobs", jobs,
         "--study-name", "linear", "--repeats", "3", "--out", str(tmp_path / "report")],
        cwd=tmp_path, env=project_env(), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    assert report.stderr.readline().startswith("re-trained 1/")
    os.killpg(report.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group
    _, stderr = report.communicate(timeout=120)
    assert report.returncode == 130
    assert stderr.strip().splitlines()[-1] == "python -m search.report: interrupted (Ctrl-C)"
    assert "Traceback" not in stderr
    assert json.loads((tmp_path / "report" / "retrained.json").read_text())["results"]


def test_a_database_in_a_read_only_folder_is_reported(read_only_share):
    """SQLite wants to write its -shm file beside a WAL database even to read it: "unable to
    open database file" in a folder this user cannot write."""
    run = read_only_share.run(
        "search.report", "--storage", read_only_share.url, "--study-name", "linear",
        "--repeats", "0", "--out", "report",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert (read_only_share.folder / "report" / "report.md").exists()
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert "dashboard note and graph not saved" in run.stderr and "readonly" in run.stderr
    assert sorted(p.name for p in (read_only_share.folder / "share").iterdir()) == ["colleague.db"]


def test_a_rerun_without_repeats_replaces_the_graph(reported_study, tmp_path):
    # On a copy: a rerun rewrites the note, which later tests read from the shared study.
    copy = tmp_path / "linear.db"
    copy.write_bytes(Path(reported_study.url.removeprefix("sqlite:///")).read_bytes())
    url = f"sqlite:///{copy}"
    run = run_module(
        "search.report",
        "--storage",
        url,
        "--study-name",
        "linear",
        "--repeats",
        "0",
        "--out",
        str(tmp_path / "again"),
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    report = json.loads((tmp_path / "again" / "report.json").read_text())
    assert "robustness" not in report
    assert "Skipped (`--repeats 0`)" in (tmp_path / "again" / "report.md").read_text()
    assert graph_ids(url) == {"regsearch-learning-curves"}


def test_all_reports_every_study_and_a_cross_task_summary(reported_study, tmp_path):
    url = f"sqlite:///{tmp_path / 'two.db'}"
    for name, epochs in (("a", "5"), ("b", "6")):
        made = run_module(
            "search.linear",
            "--trials",
            "4",
            "--epochs",
            epochs,
            "--study-name",
            name,
            "--storage",
            url,
            cwd=tmp_path,
        )
        assert made.returncode == 0, made.stderr
    run = run_module(
        "search.report", "--storage", url, "--all", "--repeats", "0", "--out", "out", cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr
    for name in ("a", "b"):
        assert (tmp_path / "out" / name / "report.md").exists()
    rows = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [r["study"] for r in rows] == ["a", "b"]
    for row in rows:
        # 4 trials are too few to rank the parameters: the summary names none.
        assert row["most_important"].startswith("not reliable yet")
        assert row["moved_metric_by"] is None
        report = json.loads((tmp_path / "out" / row["study"] / "report.json").read_text())
        assert row["best_val_loss"] == report["best"]["val_loss"]
        assert row["best_metric"] == report["best"]["test_mse"]
    # Which study won, side by side with the numbers it won by (lower test MSE is better).
    winner = min(rows, key=lambda r: r["best_metric"])
    assert [r["won"] for r in rows] == [
        "yes (best trial test_mse)" if r is winner else "no" for r in rows
    ]
    assert "Cross-task summary" in run.stdout and "| won |" in run.stdout
    assert "| - test_mse |" not in run.stdout  # an empty "moved metric by" reads "-"


def one_line_error(run, *fragments: str) -> None:
    assert run.returncode == 2
    assert len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.stderr
    for fragment in fragments:
        assert fragment in run.stderr


def test_unknown_study_lists_the_existing_ones(reported_study, tmp_path):
    run = run_module(
        "search.report", "--storage", reported_study.url, "--study-name", "nope", cwd=tmp_path
    )
    one_line_error(run, "no study named 'nope'", "linear")
    assert not (tmp_path / "studies").exists()


def test_a_missing_database_is_not_created(tmp_path):
    db = tmp_path / "missing.db"
    run = run_module(
        "search.report", "--storage", f"sqlite:///{db}", "--study-name", "x", cwd=tmp_path
    )
    one_line_error(run, "no study database", "--storage")
    assert not db.exists()


def linear_settings(reported_study) -> dict:
    return optuna.load_study(study_name="linear", storage=reported_study.url).user_attrs[
        SETTINGS_ATTR
    ]


def test_a_study_without_completed_trials_is_refused(reported_study, tmp_path):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    study = optuna.create_study(study_name="empty", storage=url)
    study.set_user_attr(SETTINGS_ATTR, linear_settings(reported_study))
    run = run_module(
        "search.report", "--storage", url, "--study-name", "empty", "--repeats", "0", cwd=tmp_path
    )
    one_line_error(run, "no completed trial", "run more trials")
    assert optuna_dashboard.get_note(study) == ""


def test_an_unwritable_output_folder_is_refused_before_work(reported_study, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    before = optuna_dashboard.get_note(
        optuna.load_study(study_name="linear", storage=reported_study.url)
    )
    run = run_module(
        "search.report",
        "--storage",
        reported_study.url,
        "--study-name",
        "linear",
        "--out",
        str(blocker / "report"),
        cwd=tmp_path,
    )
    one_line_error(run, "cannot write the report", "--out")
    after = optuna_dashboard.get_note(
        optuna.load_study(study_name="linear", storage=reported_study.url)
    )
    assert after == before


def test_a_cifar_study_without_data_is_refused(reported_study, tmp_path):
    url = f"sqlite:///{tmp_path / 'cifar.db'}"
    study = optuna.create_study(study_name="cifar", storage=url)
    study.set_user_attr(SETTINGS_ATTR, {**linear_settings(reported_study), "task": "cifar"})
    run = run_module(
        "search.report",
        "--storage",
        url,
        "--study-name",
        "cifar",
        cwd=tmp_path,
        env={"CIFAR10_ROOT": ""},
    )
    one_line_error(run, "needs the data", "--data")


def test_a_database_of_several_studies_needs_a_study_name_or_all(tmp_path):
    url = f"sqlite:///{tmp_path / 'two.db'}"
    for name in ("a", "b"):
        optuna.create_study(study_name=name, storage=url)
    run = run_module("search.report", "--storage", url, cwd=tmp_path)
    one_line_error(run, "hold 2 studies (a, b): name one with --study-name NAME", "--all")


def test_the_only_study_of_a_database_needs_no_study_name(reported_study, tmp_path):
    # On a copy: the report rewrites the note, which other tests read from the shared study.
    copy = tmp_path / "linear.db"
    copy.write_bytes(Path(reported_study.url.removeprefix("sqlite:///")).read_bytes())
    run = run_module(
        "search.report", "--storage", f"sqlite:///{copy}", "--repeats", "0", "--no-ablation",
        "--out", str(tmp_path / "only"), cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert json.loads((tmp_path / "only" / "report.json").read_text())["study"] == "linear"


def test_no_ablation_with_ablation_path_is_refused(reported_study, tmp_path):
    run = run_module(
        "search.report", "--storage", reported_study.url, "--no-ablation", "--ablation-path",
        cwd=tmp_path,
    )  # fmt: skip
    one_line_error(run, "--ablation-path: not allowed with argument --no-ablation")


def test_history_plot_is_a_png(tmp_path, reported_study):
    study = optuna.load_study(study_name="linear", storage=reported_study.url)
    assert plot_history(study.trials, tmp_path / "h.png") == "h.png"
    assert (tmp_path / "h.png").read_bytes()[:8] == PNG_MAGIC


@pytest.mark.slow
def test_cifar_report(tmp_path, cifar_archive, cifar_cache):
    url = f"sqlite:///{tmp_path / 'cifar.db'}"
    common = ("--storage", url, "--cache-dir", str(cifar_cache))
    search = run_module(
        "search.cifar",
        *TINY_CIFAR_SEARCH,
        "--data",
        str(cifar_archive),
        *common,
        cwd=tmp_path,
    )
    assert search.returncode == 0, search.stderr
    run = run_module(
        "search.report",
        "--study-name",
        "cifar",
        "--repeats",
        "1",
        "--data",
        str(cifar_archive),
        *common,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    report = json.loads((tmp_path / "studies" / "cifar-report" / "report.json").read_text())
    assert report["metric"] == {"key": "test_accuracy", "higher_is_better": True}
    assert {b["baseline"] for b in report["baselines"]} == {
        "no regularization",
        "reference (dropout 0.25)",
    }
    runs = report["robustness"]["runs"]
    assert set(runs) == {"best", "no regularization", "reference (dropout 0.25)"}
    assert all(0 <= r["values"][0] <= 1 and r["std"] is None for r in runs.values())
    assert (
        report["robustness"]["comparisons"]["no regularization"]["verdict"] == "needs 2+ seeds each"
    )


def test_the_ablation_reverts_each_regularizer_of_the_best_over_the_same_seeds(reported_study):
    report = json.loads((reported_study.out / "report.json").read_text())
    ablation, robust = report["ablation"], report["robustness"]
    best = report["best"]["params"]
    assert ablation["rows"], "the best of the 8 trials uses some regularizer"
    for row in ablation["rows"]:
        assert row["params"] == best | {row["regularizer"]: row["params"][row["regularizer"]]}
        assert row["params"] != best
        assert row["run"]["seeds"] == robust["seeds"]
        assert row["verdict"] in ("helps", "hurts", "no measurable effect")
    assert ablation["path"] is None  # off by default
    md = (reported_study.out / "report.md").read_text()
    assert "## Ablation: what each regularizer of the best adds" in md
    assert ablation["finding"][1:] in md
    assert f"ablation: {ablation['finding']}" in reported_study.stdout
    study = optuna.load_study(study_name="linear", storage=reported_study.url)
    assert f"- ablation: {ablation['finding']}" in optuna_dashboard.get_note(study)


def test_the_early_epochs_are_graded_by_rank_correlation(reported_study):
    report = json.loads((reported_study.out / "report.json").read_text())
    rows = report["fidelity"]["rows"]
    assert rows[0]["group"] == "all" and len(rows[0]["tau"]) == 10  # the fixture's 10 epochs
    md = (reported_study.out / "report.md").read_text()
    assert "## How far the early epochs can be trusted" in md
    assert f"In short: {report['fidelity']['sentence']}." in md


def test_a_rerun_reuses_every_re_training_and_the_path_ends_at_the_best(reported_study, tmp_path):
    common = ("--storage", reported_study.url, "--study-name", "linear", "--repeats", "2")
    again = run_module("search.report", *common, cwd=reported_study.out.parent.parent)
    assert again.returncode == 0, again.stderr
    assert "re-trained" not in again.stderr  # all read back from retrained.json
    before = json.loads((reported_study.out / "report.json").read_text())
    out = tmp_path / "path"
    run = run_module(
        "search.report", *common, "--ablation-path", "--jobs", "2", "--out", str(out), cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr
    report = json.loads((out / "report.json").read_text())
    # Worker processes re-train to the same numbers as the single process did.
    assert report["robustness"]["runs"] == before["robustness"]["runs"]
    path = report["ablation"]["path"]
    assert path[0]["added"] is None and path[-1]["params"] == report["best"]["params"]
    assert (out / "ablation_path.png").read_bytes()[:8] == PNG_MAGIC
    skipped = run_module("search.report", *common, "--no-ablation", "--out", str(out), cwd=tmp_path)
    assert skipped.returncode == 0, skipped.stderr
    assert "ablation" not in json.loads((out / "report.json").read_text())
    assert "Skipped (`--no-ablation`)" in (out / "report.md").read_text()


def _one_seed(value: float) -> dict:
    return {"seeds": [7], "values": [value], "mean": value, "std": None}


def test_the_report_reads_as_plain_words(reported_study):
    report = json.loads((reported_study.out / "report.json").read_text())
    names = [b["baseline"] for b in report["baselines"]]
    report["robustness"] = {
        "repeats": 1,
        "seeds": [7],
        "runs": {"best": _one_seed(0.1), **{name: _one_seed(0.2) for name in names}},
        "comparisons": {
            name: {"lead": None, "noise": None, "welch_p": None, "verdict": "needs 2+ seeds each"}
            for name in names
        },
    }
    report.pop("ablation")
    # Every saved epoch saved by the pruner: there is no rest for early stopping.
    report["pruning"] |= {"epochs_run": 50, "epochs_unpruned": 80, "pruned_epochs_saved": 30}
    texts = render_report(report), render_note(report), render_stdout(report)
    for text in texts:
        assert "1 seeds" not in text and "± -" not in text
        assert "(reference) (measured)" not in text and "(measured)" not in text
    assert "over 1 seed" in texts[1] and "over 1 seed" in texts[2]
    assert "(30 epochs, all by pruning)." in texts[0] and "early stopping)" not in texts[0]


def test_an_ablation_at_odds_with_the_importances_is_explained(reported_study):
    report = json.loads((reported_study.out / "report.json").read_text())
    ranked = list(report["importances"])
    last = ranked[-1]
    row = {
        "regularizer": last,
        "best_value": "x",
        "reverted_to": "0",
        "params": {},
        "run": {"seeds": [1, 2], "values": [0.1, 0.2], "mean": 0.15, "std": 0.05},
        "difference": 0.5,
        "noise": 0.1,
        "verdict": "helps",
    }
    report["ablation"] = {"rows": [row], "finding": "x matters", "path": None}
    md = render_report(report)
    assert f"the importances rank {last} {len(ranked)} of {len(ranked)}" in md
    assert "go by the ablation" in md


def test_one_seed_skips_the_ablation_before_training_it(reported_study, tmp_path):
    copy = tmp_path / "linear.db"
    copy.write_bytes(Path(reported_study.url.removeprefix("sqlite:///")).read_bytes())
    out = tmp_path / "one"
    run = run_module(
        "search.report",
        *("--storage", f"sqlite:///{copy}", "--study-name", "linear"),
        *("--repeats", "1", "--out", str(out)),
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    report = json.loads((out / "report.json").read_text())
    assert "ablation" not in report
    # Only the finalists and the baselines were trained, once each.
    trained = json.loads((out / "retrained.json").read_text())["results"]
    configurations = [r["trial"]["params"] for r in report["finalists"]["rows"]]
    configurations += [
        b["params"] for b in report["baselines"] if b["params"] not in configurations
    ]
    assert len(trained) == len(configurations)
    md = (out / "report.md").read_text()
    assert "Skipped (`--repeats 1`: telling a regularizer's effect from seed noise" in md


def _linear_study(url: str, epochs: str, cwd: Path) -> None:
    made = run_module(
        "search.linear", "--trials", "4", "--epochs", epochs, "--storage", url, cwd=cwd
    )
    assert made.returncode == 0, made.stderr


def test_one_study_name_in_two_databases_gives_two_reports(tmp_path):
    urls = {name: f"sqlite:///{tmp_path / name}.db" for name in ("A", "B")}
    _linear_study(urls["A"], "5", tmp_path)
    _linear_study(urls["B"], "6", tmp_path)
    both = ("--storage", urls["A"], "--storage", urls["B"])
    run = run_module("search.report", *both, "--all", "--repeats", "0", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    for name, url in urls.items():
        # Each in a folder named by its database, each naming it; before, B's was dropped.
        md = (tmp_path / "studies" / f"{name}-linear-report" / "report.md").read_text()
        assert f"Database: `{url}`." in md
    rows = json.loads((tmp_path / "studies" / "summary.json").read_text())
    assert [r["storage"] for r in rows] == [urls["A"], urls["B"]]
    assert f"linear ({urls['B']})" in run.stdout

    # Reported one at a time, the second does not overwrite the first's default folder.
    for name in ("B", "A"):
        alone = run_module(
            "search.report", "--storage", urls[name], "--study-name", "linear", "--repeats", "0",
            cwd=tmp_path,
        )  # fmt: skip
        assert alone.returncode == 0, alone.stderr
    first = json.loads((tmp_path / "studies" / "linear-report" / "report.json").read_text())
    assert first["storage"] == urls["B"]
    assert "report: studies/A-linear-report/report.md" in alone.stdout


def test_a_report_without_repeats_keeps_the_earlier_seeds(reported_study, tmp_path):
    copy = tmp_path / "linear.db"
    copy.write_bytes(Path(reported_study.url.removeprefix("sqlite:///")).read_bytes())
    out = tmp_path / "report"
    shutil.copytree(reported_study.out, out)
    earlier = json.loads((out / "report.json").read_text())
    run = run_module(
        "search.report",
        *("--storage", f"sqlite:///{copy}", "--all", "--repeats", "0", "--out", str(out)),
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    report = json.loads((out / "report.json").read_text())
    # It replaced the 2-seed sections with "Skipped", and the best with the search's lowest.
    assert report["robustness"] == earlier["robustness"]
    assert report["ablation"] == earlier["ablation"]
    assert report["finalists"] == earlier["finalists"] and report["best"] == earlier["best"]
    md = (out / "report.md").read_text()
    assert "Skipped" not in md
    assert f"Kept from the report of {earlier['made_at']}" in md


def test_one_finalist_is_the_search_s_best_trial(reported_study, tmp_path):
    copy = tmp_path / "linear.db"
    copy.write_bytes(Path(reported_study.url.removeprefix("sqlite:///")).read_bytes())
    flags = ("--repeats", "2", "--finalists", "1", "--no-ablation", "--out", str(tmp_path / "r"))
    run = run_module("search.report", "--storage", f"sqlite:///{copy}", *flags, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    study = optuna.load_study(study_name="linear", storage=f"sqlite:///{copy}")
    assert "finalists" not in report and report["best"]["number"] == study.best_trial.number
    assert "chosen among" not in (tmp_path / "r" / "report.md").read_text()
