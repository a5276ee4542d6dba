"""The notebook API: `from search import TaskSpec, run_search, write_report`."""

import subprocess
import sys

import pytest
import torch

import search
from search import TaskSpec, run_search, write_report
from search.errors import UsageError
from tests.conftest import ROOT
from tests.search.test_run import write_task
from tests.search.test_spec import sequential_spec, spec


def test_the_public_names_import_from_the_top_of_the_package():
    assert sorted(search.__all__) == sorted(
        [
            "ACTIVATIONS",
            "Regularizers",
            "TaskSpec",
            "UsageError",
            "load_task",
            "make_activation",
            "run_search",
            "write_report",
        ]
    )
    for name in search.__all__:
        assert getattr(search, name) is not None
        assert name in dir(search)  # a notebook's tab completion offers it
    assert search.UsageError is UsageError  # what run_search raises, without a second import
    # Lazily: importing one module of the package does not load the CLIs.
    run = subprocess.run(
        [sys.executable, "-c", "import search.space, sys; print('search.cli' in sys.modules)"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert run.stdout.strip() == "False", run.stderr


def test_a_spec_made_in_python_is_searched_and_reported(tmp_path):
    task = spec()
    url = f"sqlite:///{tmp_path / 'nb.db'}"
    study = run_search(task, trials=3, storage=url, epochs=2, device="cpu")
    assert len(study.trials) == 3 and study.study_name == "toy"
    with pytest.raises(UsageError, match="pass its TaskSpec"):
        write_report(study, out=str(tmp_path / "r1"))
    report = write_report(study, repeats=2, task=task, out=str(tmp_path / "r2"))
    assert set(report["robustness"]["runs"]) == {
        "best",
        "no regularization",
        "reference (dropout 0.25)",
    }
    assert (tmp_path / "r2" / "report.md").exists()


def test_a_fused_search_gives_the_caller_its_torch_threads_back(tmp_path):
    # 4 trials at once on a CPU by default, and the fused worker runs torch on one thread
    # meanwhile (docs/fused.md).
    task = sequential_spec()
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        study = run_search(task, trials=4, storage=f"sqlite:///{tmp_path / 'f.db'}", device="cpu")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    trials = study.trials
    assert len(trials) == 4
    # Fused: all four started before the first ended.
    assert max(t.datetime_start for t in trials) < min(t.datetime_complete for t in trials)


def test_a_task_file_runs_with_jobs_and_reports_without_the_spec(tmp_path):
    task = write_task(tmp_path)
    url = f"sqlite:///{tmp_path / 'f.db'}"
    study = run_search(f"{task}:build_task", trials=4, storage=url, epochs=1, jobs=2)
    assert len(study.trials) == 4
    report = write_report(study, repeats=0, out=str(tmp_path / "r"))
    assert report["best"]["number"] in range(4)


@pytest.mark.slow
def test_jobs_from_a_script_without_a_main_guard_says_how_to_fix_it(tmp_path):
    """Each spawned worker imports the script again: the unguarded run_search ran once more in
    every worker, which died in multiprocessing's bootstrapping RuntimeError, and the parent
    said "run again"."""
    task = write_task(tmp_path)
    url = f"sqlite:///{tmp_path / 's.db'}"
    script = tmp_path / "search_script.py"
    script.write_text(
        "from search import run_search\n"
        f"run_search({f'{task}:build_task'!r}, trials=4, storage={url!r}, epochs=1, jobs=2)\n"
    )
    run = subprocess.run(
        [sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 1
    assert "bootstrapping phase" not in run.stderr
    guard = 'put its calls under `if __name__ == "__main__":`'
    assert run.stderr.count(guard) == 2, run.stderr  # once from each worker
    assert run.stderr.strip().splitlines()[-1] == (
        "search.errors.UsageError: a worker process stopped on bad input: its line is printed above"
    )

    script.write_text(
        "from search import run_search\n"
        "if __name__ == '__main__':\n"
        f"    run_search({f'{task}:build_task'!r}, trials=4, storage={url!r}, epochs=1, jobs=2)\n"
    )
    run = subprocess.run(
        [sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr


def test_bad_options_raise_one_line_and_write_nothing(tmp_path):
    url = f"sqlite:///{tmp_path / 'none.db'}"
    with pytest.raises(UsageError, match="jobs > 1 needs the task as a file reference"):
        run_search(spec(), jobs=2, storage=url)
    # The command's message, without the command's name that a notebook never typed.
    with pytest.raises(UsageError, match=r"^argument --epochs: must be at least 1, got 0$"):
        run_search(spec(), epochs=0, storage=url)
    # The API used to skip this check of the command: its workers' live trials were failed.
    with pytest.raises(UsageError, match="--grace-period 5 must be above --heartbeat-interval"):
        run_search(spec(), grace_period=5, storage=url)
    with pytest.raises(UsageError, match=r"^no option named colour$"):
        run_search(spec(), colour="red", storage=url)
    with pytest.raises(UsageError, match="its low end is above its high end"):
        run_search(TaskSpec(**{**spec().__dict__, "dropout": (0.4, 0.1)}), storage=url)
    assert not (tmp_path / "none.db").exists()
