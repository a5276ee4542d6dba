"""python -m search.run: a user's task file searched, reported, served and shared by workers."""

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from search import run as run_cli
from search.attrs import SOURCE_ATTR
from search.report import __main__ as report_cli
from tests.conftest import project_env, run_module
from tests.search.conftest import DASHBOARD_CLI, get_json

# A task file as docs/own-model.md writes it: neither CIFAR-10 nor the linear task.
TASK_FILE = """\
import torch
from torch import nn

from search import Regularizers, TaskSpec, make_activation


def build_model(reg: Regularizers) -> nn.Module:
    return nn.Sequential(
        nn.Linear(10, 32),
        make_activation(reg.activation),
        nn.Dropout(reg.dropout),
        nn.Linear(32, 2),
    )


def build_task() -> TaskSpec:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 10, generator=g)
    y = (x[:, :3].sum(dim=1) > 0).long()
    return TaskSpec(
        name="my-task",
        train=(x[:200], y[:200]),
        val=(x[200:300], y[200:300]),
        test=(x[300:], y[300:]),
        build_model=build_model,
        loss="cross_entropy",
        optimizer="adam",
        lr=1e-3,
        batch_size=32,
        epochs=10,
        dropout=(0.0, 0.6),
        weight_decay=(1e-6, 1e-2),
        l1=None,
        activations=("relu", "tanh"),
        baselines={"reference (dropout 0.2)": {"dropout": 0.2}},
    )
"""


def write_task(folder: Path, text: str = TASK_FILE, name: str = "my_task.py") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """main(argv) in this process: the exit status, stdout and stderr."""
    code = run_cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, says: str) -> None:
    assert code == 2, err
    assert says in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_task_file_searches_stores_its_source_and_resumes(tmp_path, capsys):
    task = write_task(tmp_path)
    url = f"sqlite:///{tmp_path / 's.db'}"
    flags = ("--task", f"{task}:build_task", "--epochs", "2", "--storage", url)
    code, out, err = run(capsys, "--trials", "3", *flags)
    assert code == 0, err
    assert "best regularizers:" in out and "--study-name my-task" in out
    study = optuna.load_study(study_name="my-task", storage=url)
    assert study.user_attrs[SOURCE_ATTR]["task"] == f"{task}:build_task"
    assert len(study.user_attrs[SOURCE_ATTR]["sha256"]) == 64
    assert study.user_attrs["settings"]["loss"] == "cross_entropy"
    assert [t.user_attrs.get("baseline") for t in study.trials[:2]] == [
        "no regularization",
        "reference (dropout 0.2)",
    ]
    assert "l1" not in study.trials[2].params  # l1=None: not searched
    code, _, err = run(capsys, "--trials", "4", *flags)
    assert code == 0, err
    assert len(optuna.load_study(study_name="my-task", storage=url).trials) == 4


def test_a_task_in_a_package_is_named_by_its_module(tmp_path, capsys, monkeypatch):
    package = tmp_path / "my_package"
    package.mkdir()
    (package / "__init__.py").write_text("")
    write_task(package, name="tasks.py")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # as `python -m` puts the current folder
    code, _, err = run(capsys, "--task", "my_package.tasks:build_task", "--trials", "2")
    assert code == 0, err
    url = f"sqlite:///{tmp_path / 'studies' / 'my-task.db'}"
    source = optuna.load_study(study_name="my-task", storage=url).user_attrs[SOURCE_ATTR]
    assert source["task"] == "my_package.tasks:build_task"


def test_a_study_whose_task_file_changed_is_refused_untouched(tmp_path, capsys):
    task = write_task(tmp_path)
    url = f"sqlite:///{tmp_path / 's.db'}"
    flags = ("--task", f"{task}:build_task", "--epochs", "1", "--storage", url)
    assert run(capsys, "--trials", "2", *flags)[0] == 0
    task.write_text(TASK_FILE.replace("nn.Linear(32, 2)", "nn.Linear(32, 2, bias=False)"))
    code, _, err = run(capsys, "--trials", "3", *flags)
    assert_one_line_error(code, err, "has changed since")
    assert "restore that version" in err and "--study-name" in err
    assert len(optuna.load_study(study_name="my-task", storage=url).trials) == 2
    # The report cannot re-train it either; it says so in one line.
    report = report_cli.main(["--storage", url, "--study-name", "my-task", "--out", str(tmp_path)])
    _, err = capsys.readouterr()
    assert_one_line_error(report, err, "has changed since the study was made")


def test_help_shows_the_task_files_defaults(tmp_path, capsys):
    task = write_task(tmp_path, TASK_FILE.replace("epochs=10", "epochs=17"))
    with pytest.raises(SystemExit) as exit_:
        run_cli.main(["--task", f"{task}:build_task", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "training epochs per trial (default: 17)" in out
    assert "sqlite:///studies/my-task.db" in out


FAILING = {
    "raises": TASK_FILE.replace("    g = torch", "    1 / 0\n    g = torch"),
    "returns a dict": TASK_FILE + "\n\ndef other():\n    return {'name': 'x'}\n",
    "import fails": "import no_such_module_here\n",
    "built-in name": TASK_FILE.replace('"my-task"', '"linear"'),
    "range": TASK_FILE.replace("dropout=(0.0, 0.6)", "dropout=(0.6, 0.0)"),
    "nothing to search": TASK_FILE.replace("dropout=(0.0, 0.6)", "dropout=0.1")
    .replace("weight_decay=(1e-6, 1e-2)", "weight_decay=None")
    .replace('activations=("relu", "tanh")', 'activations="relu"')
    .replace("baselines=", "patience=None, baselines=")
    .replace('{"reference (dropout 0.2)": {"dropout": 0.2}}', "{}"),
    "labels": TASK_FILE.replace(
        "y = (x[:, :3].sum(dim=1) > 0).long()", "y = torch.full((400,), 2)"
    ),
    "ignores dropout": TASK_FILE.replace("nn.Dropout(reg.dropout)", "nn.Dropout(0.1)"),
}


@pytest.mark.parametrize(
    ("case", "reference", "says"),
    [
        ("none", "missing.py:build_task", "no such file missing.py"),
        ("none", "no_such_package.tasks:build_task", "no module named 'no_such_package'"),
        ("none", "my_task.py", "give path/to/task.py:function"),
        ("raises", "my_task.py:nope", "it defines no function nope()"),
        ("raises", "my_task.py:build_task", "build_task() raised ZeroDivisionError"),
        ("returns a dict", "my_task.py:other", "other() returned dict, not a search.TaskSpec"),
        ("import fails", "my_task.py:build_task", "importing it raised ModuleNotFoundError"),
        ("built-in name", "my_task.py:build_task", "'linear' is a built-in task's"),
        ("range", "my_task.py:build_task", "its low end is above its high end"),
        ("nothing to search", "my_task.py:build_task", "nothing to search"),
        ("labels", "my_task.py:build_task", "labels run from 2 to 2 but the model outputs 2"),
        ("ignores dropout", "my_task.py:build_task", "the model ignores the dropout rate"),
    ],
)
def test_a_wrong_task_is_one_line_exit_2_and_writes_nothing(
    tmp_path, capsys, monkeypatch, case, reference, says
):
    monkeypatch.chdir(tmp_path)
    if case != "none":
        write_task(tmp_path, FAILING[case])
    code, _, err = run(capsys, "--task", reference, "--trials", "2", "--epochs", "1")
    assert_one_line_error(code, err, says)
    assert not (tmp_path / "studies").exists()


UNFUSABLE = {
    "has layer '2', a LayerNorm": TASK_FILE.replace(
        "        nn.Dropout(reg.dropout),",
        "        nn.LayerNorm(32),\n        nn.Dropout(reg.dropout),",
    ),
    # No parameters but running statistics, which fused training crashed on with a traceback.
    "has layer '2', a BatchNorm1d": TASK_FILE.replace(
        "        nn.Dropout(reg.dropout),",
        "        nn.BatchNorm1d(32, affine=False),\n        nn.Dropout(reg.dropout),",
    ),
    "is a Wrapped, with its own forward": TASK_FILE.replace(
        "def build_model(reg: Regularizers) -> nn.Module:\n    return nn.Sequential(",
        "class Wrapped(nn.Module):\n"
        "    def __init__(self, net):\n        super().__init__()\n        self.net = net\n\n"
        "    def forward(self, x):\n        return self.net(x)\n\n\n"
        "def build_model(reg: Regularizers) -> nn.Module:\n    return Wrapped(nn.Sequential(",
    ).replace("nn.Linear(32, 2),\n    )", "nn.Linear(32, 2),\n    ))"),
}


@pytest.mark.parametrize("says", UNFUSABLE)
def test_fuse_names_what_keeps_a_model_from_fused_training(tmp_path, capsys, monkeypatch, says):
    monkeypatch.chdir(tmp_path)
    write_task(tmp_path, UNFUSABLE[says])
    flags = ("--task", "my_task.py:build_task", "--trials", "2", "--epochs", "1")
    code, _, err = run(capsys, *flags, "--fuse", "2")
    assert_one_line_error(code, err, f"--fuse 2: the my-task model {says}")
    assert "use --fuse 1" in err
    assert not (tmp_path / "studies").exists()
    code, out, err = run(capsys, *flags)  # by default such a model trains one trial at a time
    assert code == 0 and "at a time" not in out, err


def test_search_run_without_a_task_says_so(tmp_path):
    run = run_module("search.run", "--trials", "2", cwd=tmp_path)
    assert run.returncode == 2 and "the following arguments are required: --task" in run.stderr
    assert not (tmp_path / "studies").exists()


def start(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "search.run", *args],
        cwd=cwd,
        env={"PYTHONPATH": project_env()["PYTHONPATH"], "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def search_by_hand(task: str, url: str, folder: Path, trials: int) -> None:
    """`--jobs 2` to half the trials, then two processes started by hand to `trials`."""
    flags = ("--task", task, "--epochs", "4", "--storage", url, "--heartbeat-interval", "1")
    jobs = run_module("search.run", *flags, "--trials", str(trials // 2), "--jobs", "2", cwd=folder)
    assert jobs.returncode == 0, jobs.stderr
    assert "with 2 workers" in jobs.stdout
    workers = [start(*flags, "--trials", str(trials), cwd=folder) for _ in range(2)]
    for worker in workers:
        _, stderr = worker.communicate(timeout=600)
        assert worker.returncode == 0, stderr
    found = optuna.load_study(study_name="my-task", storage=url).trials
    assert len(found) == trials and all(t.state.is_finished() for t in found)
    assert len({t.number for t in found}) == trials
    names = [t.user_attrs.get("baseline") for t in found if t.user_attrs.get("baseline")]
    assert sorted(names) == ["no regularization", "reference (dropout 0.2)"]


@pytest.mark.slow
def test_a_task_file_does_everything_a_built_in_task_does(tmp_path, serve):
    """The issue's "done when": a task file written from docs/own-model.md runs a 20-trial
    search with pruning and baselines on --jobs 2 and two hand-started workers (an exact
    total), search.report with 3 seeds and the ablation, and the dashboard."""
    write_task(tmp_path)
    url = f"sqlite:///{tmp_path / 'my-task.db'}"
    search_by_hand("my_task.py:build_task", url, tmp_path, 20)
    study = optuna.load_study(study_name="my-task", storage=url)
    assert study.user_attrs["settings"]["warmup_epochs"] == 1  # Hyperband from epoch 1
    assert {TrialState.COMPLETE, TrialState.PRUNED} <= {t.state for t in study.trials}

    # The report runs elsewhere: it finds the task file by its stored path.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    report = run_module("search.report", "--storage", url, "--study-name", "my-task", cwd=elsewhere)
    assert report.returncode == 0, report.stderr
    numbers = json.loads((elsewhere / "studies" / "my-task-report" / "report.json").read_text())
    assert numbers["metric"]["key"] == "test_accuracy"
    runs = numbers["robustness"]["runs"]
    assert set(runs) == {"best", "no regularization", "reference (dropout 0.2)"}
    assert all(len(r["values"]) == 3 and r["mean"] is not None for r in runs.values())
    assert "finding" in numbers["ablation"]
    assert numbers["pruning"]["epochs_run"] < numbers["pruning"]["epochs_unpruned"]

    base = serve(str(DASHBOARD_CLI), url, "--host", "127.0.0.1", "--port")
    summaries = get_json(f"{base}/api/studies")["study_summaries"]
    sid = next(s["study_id"] for s in summaries if s["study_name"] == "my-task")
    detail = get_json(f"{base}/api/studies/{sid}")
    assert len(detail["trials"]) == 20
    assert "Best regularizers of `my-task`" in detail["note"]["body"]


@pytest.mark.slow
def test_hand_started_workers_share_a_task_file_study_on_postgresql(tmp_path, postgres_database):
    write_task(tmp_path)
    search_by_hand("my_task.py:build_task", postgres_database[1], tmp_path, 8)
