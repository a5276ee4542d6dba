import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from search.attrs import BASELINE_ATTR
from search.config import SearchConfig
from search.errors import UsageError
from search.linear import build_parser
from search.progress import SearchProgress
from search.tasks.linear import build_task
from search.workers import Worker, _stopped_line, run_study, worker_seed
from tests.conftest import run_module
from tests.search.workers_helpers import (
    BEATS,
    FAST,
    ONE_AT_A_TIME,
    assert_exact_study,
    running_with_epochs,
    start_worker,
    stop_mid_trial,
    trials,
    wait_until,
    workers_joined,
)


def test_worker_seeds_are_distinct_and_worker_0_keeps_the_seed():
    assert worker_seed(7, 0) == 7
    assert len({worker_seed(7, worker) for worker in range(100)}) == 100


@pytest.mark.slow
def test_hand_started_workers_on_a_new_sqlite_file_share_an_exact_total(tmp_path):
    """4 workers started at once race to create the tables and the study, then write together."""
    url = f"sqlite:///{tmp_path / 'new' / 'race.db'}"
    workers = [
        start_worker("--trials", "10", *FAST, "--storage", url, cwd=tmp_path) for _ in "abcd"
    ]
    outputs = [worker.communicate(timeout=300) for worker in workers]
    for worker, (_, stderr) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, stderr
        assert "locked" not in stderr and "Traceback" not in stderr
    found = assert_exact_study(url, 10)
    assert sum("baseline" in t.user_attrs for t in found) == 1  # enqueued exactly once
    sampled = [tuple(sorted(t.params.items())) for t in found if "baseline" not in t.user_attrs]
    assert len(set(sampled)) == len(sampled)  # no worker repeated another's suggestions
    assert workers_joined(url) == 4


@pytest.mark.slow
def test_a_worker_started_beside_a_live_one_waits_for_its_heartbeat_without_a_word(tmp_path):
    """It used to say "waiting for trial 0, left running before this command started: if its
    worker sends no heartbeat ... it is failed", which reads as a dead worker."""
    url = f"sqlite:///{tmp_path / 'pair.db'}"
    flags = ("--trials", "3", "--epochs", "300", "--pruner", "none", "--storage", url)
    flags += ("--heartbeat-interval", "10", "--grace-period", "30")
    first = start_worker(*flags, cwd=tmp_path)
    wait_until(lambda: running_with_epochs(url, 1))
    second = run_module("search.linear", *flags, cwd=tmp_path)
    first.communicate(timeout=300)
    assert first.returncode == 0 and second.returncode == 0, second.stderr
    assert "waiting for trial" not in second.stdout
    assert_exact_study(url, 3)


@pytest.mark.slow
def test_jobs_count_the_trials_already_in_the_study(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    first = run_module("search.linear", "--trials", "2", *FAST, "--storage", url, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    run = run_module(
        "search.linear", "--trials", "7", "--jobs", "2", *FAST, "--storage", url, cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr
    assert "2 finished trials, running 5 more with 2 workers" in run.stdout
    assert run.stdout.count("best regularizers:") == 1  # one summary, from the parent
    assert_exact_study(url, 7)
    # The first run's worker was 0; the 2 processes joined as 1 and 2.
    assert workers_joined(url) == 3


@pytest.mark.slow
@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_sixteen_workers_share_an_exact_total(tmp_path, request, database):
    """SQLite: one command with --jobs 16 (one machine); PostgreSQL: 16 commands (many)."""
    flags = ("--trials", "40", "--epochs", "3", "--heartbeat-interval", "1")
    if database == "sqlite":
        url = f"sqlite:///{tmp_path / 'fleet.db'}"
        runs = [start_worker(*flags, "--jobs", "16", "--storage", url, cwd=tmp_path)]
    else:
        url = request.getfixturevalue("postgres_database")[1]
        runs = [start_worker(*flags, "--storage", url, cwd=tmp_path) for _ in range(16)]
    for run in runs:
        _, stderr = run.communicate(timeout=600)
        assert run.returncode == 0, stderr
        assert "Traceback" not in stderr
    url = url.replace("postgresql://", "postgresql+psycopg://")
    found = assert_exact_study(url, 40)
    assert not [t for t in found if t.state == TrialState.FAIL]
    assert workers_joined(url) == 16


# 1000 linear epochs last seconds: long enough to be caught, and killed, mid-trial.
KILLABLE = ("--epochs", "1000", *BEATS, *ONE_AT_A_TIME)


def kill_mid_trial(url: str, flags: tuple[str, ...], cwd: Path) -> None:
    """Start a worker and SIGKILL it once a trial of it has reported a few epochs."""
    victim = start_worker(*flags, "--storage", url, cwd=cwd)
    wait_until(lambda: running_with_epochs(url, 3))
    victim.send_signal(signal.SIGKILL)
    victim.wait()


@pytest.mark.slow
def test_a_killed_worker_s_trial_is_failed_retried_and_counted(tmp_path):
    url = f"sqlite:///{tmp_path / 'kill.db'}"
    flags = ("--trials", "4", *KILLABLE)
    kill_mid_trial(url, flags, tmp_path)
    killed = next(t for t in trials(url) if t.state == TrialState.RUNNING)

    survivor = run_module("search.linear", *flags, "--storage", url, cwd=tmp_path)
    assert survivor.returncode == 0, survivor.stderr
    found = assert_exact_study(url, 4)
    assert found[killed.number].state == TrialState.FAIL
    retry = next(t for t in found if t.system_attrs.get("failed_trial") == killed.number)
    assert retry.params == killed.params and retry.state != TrialState.FAIL


@pytest.mark.slow
def test_a_worker_waits_out_a_dead_worker_s_trial_before_leaving(tmp_path):
    """The last slot is held by a killed trial: the survivor fails it, then leaves."""
    flags = ("--trials", "2", *KILLABLE)
    # Trial 1 stops early after 0.4 s: under CI load it ended between the poll and the kill.
    # Frozen first, it can no longer end; if it ended before, the scenario starts again.
    for attempt in range(5):
        url = f"sqlite:///{tmp_path / f'last{attempt}.db'}"
        victim = start_worker(*flags, "--storage", url, cwd=tmp_path)
        wait_until(lambda: any(t.number == 1 and t.intermediate_values for t in trials(url)))  # noqa: B023
        victim.send_signal(signal.SIGSTOP)
        if trials(url)[1].state == TrialState.RUNNING:
            break
        victim.kill()
        victim.wait()
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    survivor = run_module("search.linear", *flags, "--storage", url, cwd=tmp_path)
    assert survivor.returncode == 0, survivor.stderr
    # No room is left under --trials, so the killed trial's parameters are not enqueued again.
    killed = assert_exact_study(url, 2)[1]
    assert killed.state == TrialState.FAIL
    assert killed.user_attrs["fail_reason"] == "worker stopped: no heartbeat for 2 s"


@pytest.mark.slow
def test_a_rerun_right_after_a_kill_waits_for_the_killed_trial_and_runs_it_again(tmp_path):
    """The rerun used to fill the study with new trials while the killed one's heartbeat was
    fresh: its parameters then never ran, as they did when rerun after the grace period."""
    url = f"sqlite:///{tmp_path / 'again.db'}"
    flags = ("--epochs", "1000", "--pruner", "none", "--heartbeat-interval", "1", *ONE_AT_A_TIME)
    # 15 s: under CI load the rerun's start (torch's import) took most of 8 s, and its stale pass
    # failed the trial before it said what it waited for.
    flags += ("--grace-period", "15", "--storage", url)
    victim = start_worker("--trials", "3", *flags, cwd=tmp_path)
    wait_until(lambda: running_with_epochs(url, 3, baseline=False))
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    # Under load the poll can first see trial 2 mid-training, not trial 1: the rerun's --trials
    # leaves room for exactly one more trial after the killed one, whichever it is.
    [killed] = [t for t in trials(url) if t.state == TrialState.RUNNING]

    rerun = run_module("search.linear", "--trials", str(killed.number + 2), *flags, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    n = killed.number
    assert f"waiting for trial {n:3d}, left running before this command started" in rerun.stdout
    assert (
        f"trial {n:3d} failed: its worker sent no heartbeat for 15 s (killed?); its parameters run "
        "again" in rerun.stdout
    )
    found = assert_exact_study(url, n + 2)
    assert found[n].state == TrialState.FAIL
    assert found[n + 1].params == killed.params and found[n + 1].system_attrs["failed_trial"] == n


def test_the_stop_line_names_the_trials_the_signal_stopped_and_what_a_rerun_does():
    assert _stopped_line({}) == (
        "no trial of this command was running: none was lost, the same command resumes"
    )
    assert _stopped_line({7: False}) == (
        "trial 7 stopped and marked failed: the same command runs it again first, if --trials "
        "leaves room"
    )
    assert _stopped_line({9: False, 4: False, 0: True}) == (
        "trials 4, 9 stopped and marked failed: the same command runs them again first, if "
        "--trials leaves room; baseline trial 0 stopped and marked failed: the same command "
        "measures it again first"
    )


@pytest.mark.slow
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_trial_stopped_by_a_signal_runs_again_first_on_the_rerun(tmp_path, jobs):
    """As a killed trial's do: a Ctrl-C'd trial used to count in --trials with its parameters
    never run (a 24-trial CIFAR-10 study resumed after a SIGTERM held 2 lost trials)."""
    url = f"sqlite:///{tmp_path / 'stopped.db'}"
    flags = ("--epochs", "1000", "--pruner", "none", "--jobs", jobs, *ONE_AT_A_TIME)
    flags += ("--storage", url)
    reason = "interrupted (Ctrl-C)"
    _, _, stderr = stop_mid_trial(
        url, ("--trials", "50", *flags), tmp_path, signal.SIGINT, reason, baseline=False
    )
    stopped = [
        t for t in trials(url) if t.state == TrialState.FAIL and "baseline" not in t.user_attrs
    ]
    assert stopped and all(t.user_attrs["fail_reason"] == reason for t in stopped)
    named = ", ".join(str(t.number) for t in stopped)
    said = f"trial {named}" if len(stopped) == 1 else f"trials {named}"
    assert f"{said} stopped and marked failed: the same command runs" in stderr, stderr
    waiting = [t for t in trials(url) if t.state == TrialState.WAITING]
    assert sorted(t.system_attrs["failed_trial"] for t in waiting) == [t.number for t in stopped]
    assert [t.params for t in waiting] == [t.params for t in stopped]

    total = len(trials(url))
    rerun = run_module("search.linear", "--trials", str(total), *flags, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    # With --jobs 2 the other worker may have been measuring the baseline: it is measured again
    # whatever --trials says (test_a_baseline_interrupted_in_a_full_study_is_measured_...), once
    # however many times it was stopped (a signal that found the other trial just ended early is
    # sent again, and may stop the baseline's second measurement too).
    before = trials(url)[:total]
    baselines = {t.user_attrs[BASELINE_ATTR] for t in before if BASELINE_ATTR in t.user_attrs}
    kept = {  # measured, or waiting to be measured within the total
        t.user_attrs[BASELINE_ATTR]
        for t in before
        if BASELINE_ATTR in t.user_attrs and t.state != TrialState.FAIL
    }
    found = assert_exact_study(url, total + len(baselines - kept))
    for trial in stopped:
        [again] = [t for t in found if t.system_attrs.get("failed_trial") == trial.number]
        assert again.state != TrialState.FAIL and again.params == trial.params


@pytest.mark.slow
def test_a_baseline_killed_is_measured_again_as_it_was_measured_first(tmp_path):
    """The rerun waits out the killed baseline; measured again, it scores what an uninterrupted
    search's baseline scores (its seed follows its name, not its trial number)."""
    url = f"sqlite:///{tmp_path / 'lost.db'}"
    flags = ("--trials", "3", "--epochs", "1000", "--heartbeat-interval", "1", "--pruner", "none")
    flags += ONE_AT_A_TIME
    kill_mid_trial(url, (*flags, "--grace-period", "10"), tmp_path)
    [killed] = [t for t in trials(url) if t.state == TrialState.RUNNING]
    assert killed.user_attrs["baseline"] == "no regularization (reference)"

    rerun = run_module(
        "search.linear", *flags, "--grace-period", "10", "--storage", url, cwd=tmp_path
    )
    assert rerun.returncode == 0, rerun.stderr
    found = assert_exact_study(url, 3)  # the same study as a rerun after the grace period
    assert found[killed.number].state == TrialState.FAIL
    assert found[killed.number].user_attrs["fail_reason"] == (
        "worker stopped: no heartbeat for 10 s"
    )
    measured = [t for t in found if "baseline" in t.user_attrs and t.state != TrialState.FAIL]
    assert len(measured) == 1 and measured[0].params == killed.params
    assert "fail_reason" not in measured[0].user_attrs
    fresh_url = f"sqlite:///{tmp_path / 'fresh.db'}"
    fresh = run_module(
        "search.linear", *flags, "--trials", "1", "--storage", fresh_url, cwd=tmp_path
    )
    assert fresh.returncode == 0, fresh.stderr
    assert "running 1 more (the baseline no regularization (reference) among them)" in (
        fresh.stdout
    )
    assert trials(fresh_url)[0].value == measured[0].value


@pytest.mark.slow
def test_a_baseline_interrupted_in_a_full_study_is_measured_on_the_rerun(tmp_path):
    url = f"sqlite:///{tmp_path / 'full.db'}"
    flags = ("--trials", "1", "--epochs", "1000", "--pruner", "none", "--storage", url)
    search = start_worker(*flags, cwd=tmp_path)
    wait_until(lambda: running_with_epochs(url, 3))
    search.send_signal(signal.SIGINT)
    search.communicate(timeout=120)
    [interrupted] = trials(url)
    assert interrupted.user_attrs["fail_reason"] == "interrupted (Ctrl-C)"

    rerun = run_module("search.linear", *flags, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert "already has" not in rerun.stdout
    assert "measuring the baseline no regularization (reference) again" in rerun.stdout
    first, again = assert_exact_study(url, 2)
    assert again.state == TrialState.COMPLETE and again.params == first.params
    assert again.user_attrs["baseline"] == "no regularization (reference)"


@pytest.mark.slow
@pytest.mark.parametrize("jobs", ["1", "2"])
@pytest.mark.parametrize(
    ("signum", "status", "reason"),
    [(signal.SIGINT, 130, "interrupted (Ctrl-C)"), (signal.SIGTERM, 143, "interrupted (SIGTERM)")],
    ids=["ctrl-c", "sigterm"],
)
def test_a_stop_signal_fails_the_running_trials_and_prints_the_summary(
    tmp_path, jobs, signum, status, reason
):
    url = f"sqlite:///{tmp_path / 'int.db'}"
    flags = ("--trials", "50", "--epochs", "400", "--jobs", jobs, "--pruner", "none")
    search, stdout, stderr = stop_mid_trial(
        url, (*flags, "--storage", url), tmp_path, signum, reason, baseline=None
    )
    assert search.returncode == status, stderr
    # Once, from the parent: each --jobs worker printed its own copy, cut into the others'.
    assert stderr.count(f"{reason}; ") == 1, stderr
    assert re.search(rf"{re.escape(reason)}; (baseline )?trials? [\d, ]+ stopped", stderr), stderr
    assert "Traceback" not in stderr
    assert "study 'linear':" in stdout and "failed" in stdout
    found = trials(url)
    # Finished, or waiting to run again: a stopped trial's parameters (not a baseline's)
    # are enqueued for the rerun.
    waiting = [t for t in found if t.state == TrialState.WAITING]
    assert found and all(t.state.is_finished() for t in found if t not in waiting)
    for again in waiting:
        assert found[again.system_attrs["failed_trial"]].user_attrs["fail_reason"] == reason
    assert any(t.user_attrs.get("fail_reason") == reason for t in found)


@pytest.mark.slow
def test_timeout_with_jobs_counts_from_the_command_start_and_says_it_stopped(tmp_path):
    url = f"sqlite:///{tmp_path / 'timeout.db'}"
    search = start_worker(
        "--trials", "500", "--epochs", "1000", "--jobs", "2", "--timeout", "8",
        "--storage", url, cwd=tmp_path,
    )  # fmt: skip
    # The command starts its clock before it prints its first line, and spawns its workers
    # only after it: a bound from this line's arrival holds for the command's clock.
    first_line = search.stdout.readline()
    printed = time.time()
    assert first_line.startswith("study 'linear'"), first_line
    stdout, stderr = search.communicate(timeout=300)
    assert search.returncode == 0, stderr
    assert "--timeout 8 s reached: no trial was started after it" in stdout
    # Spawned workers used to start their own clocks, seconds after the command.
    starts = [t.datetime_start.timestamp() for t in trials(url) if t.datetime_start]
    # 8 s, not less: spawned workers importing torch on a loaded 2-core machine took over 3 s
    # to start their first trial.
    assert starts and max(starts) <= printed + 8


def worker_pids(parent: int) -> list[int]:
    """The --jobs worker processes among `parent`'s children (not multiprocessing's tracker)."""
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return [
        int(pid) for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


def gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="workers follow their parent on Linux")
def test_killing_the_jobs_parent_stops_its_workers(tmp_path):
    url = f"sqlite:///{tmp_path / 'term.db'}"
    # A search far longer than the test: its workers cannot leave because the study is done.
    flags = ("--trials", "500", "--epochs", "2000", "--jobs", "2", "--pruner", "none")
    search = start_worker(*flags, "--storage", url, cwd=tmp_path)
    wait_until(lambda: running_with_epochs(url, 3))
    workers = worker_pids(search.pid)
    assert len(workers) == 2
    try:
        search.send_signal(signal.SIGTERM)  # as `kill` or a job scheduler stops it
        search.wait(timeout=60)
        wait_until(lambda: all(gone(pid) for pid in workers), seconds=30)
    finally:
        for pid in workers:  # orphans of a failed run must not outlive the test
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_trial_that_raises_fails_alone_and_the_worker_goes_on(tmp_path):
    config = SearchConfig.from_args(
        build_parser().parse_args(
            ["--trials", "6", "--epochs", "3", "--storage", f"sqlite:///{tmp_path / 'f.db'}"]
        )
    )
    task = build_task(config)

    def build_model(regularizers):
        if regularizers.dropout > 0.45:
            raise RuntimeError("CUDA out of memory (simulated by this test)")
        return task.build_model(regularizers)

    quiet = SearchProgress(config.trials, config.epochs, out=io.StringIO(), live=False)
    worker = Worker(replace(task, build_model=build_model), config, quiet)
    try:
        worker.run()
    finally:
        worker.close()
    found = worker.study.trials
    assert len(found) == 6
    failed = [t for t in found if t.state == TrialState.FAIL]
    assert failed and len(failed) < 6
    for trial in failed:
        assert trial.params["dropout"] > 0.45
        assert trial.user_attrs["fail_reason"].startswith("RuntimeError: CUDA out of memory")


@pytest.mark.slow
def test_a_suspended_worker_whose_trial_another_failed_says_so_and_goes_on(tmp_path):
    """SIGSTOP a worker mid-trial; a second one fails that trial as stale and runs it again;
    SIGCONT the first: it used to die of "ValueError: Cannot tell a FAIL trial."."""
    url = f"sqlite:///{tmp_path / 'stopped.db'}"
    flags = ("--trials", "3", *KILLABLE, "--pruner", "none", "--storage", url)
    first = start_worker(*flags, cwd=tmp_path)
    wait_until(lambda: running_with_epochs(url, 3))
    [stopped] = [t for t in trials(url) if t.state == TrialState.RUNNING]
    first.send_signal(signal.SIGSTOP)
    try:
        second = start_worker(*flags, cwd=tmp_path)
        wait_until(lambda: trials(url)[stopped.number].state == TrialState.FAIL)
    finally:
        first.send_signal(signal.SIGCONT)
    for worker in (first, second):
        stdout, stderr = worker.communicate(timeout=300)
        assert worker.returncode == 0, stderr
        assert "Traceback" not in stderr
        if worker is first:
            assert f"trial {stopped.number:3d} was set FAIL by another worker" in stdout
    found = assert_exact_study(url, 3)
    retry = next(t for t in found if t.system_attrs.get("failed_trial") == stopped.number)
    assert retry.params == stopped.params and retry.state == TrialState.COMPLETE


def test_a_trial_failed_from_outside_is_said_in_one_line_and_the_worker_goes_on(tmp_path):
    """As a person in optuna-dashboard or a script would: fail the running trial mid-training."""
    url = f"sqlite:///{tmp_path / 'outside.db'}"
    config = SearchConfig.from_args(
        build_parser().parse_args(["--trials", "4", "--epochs", "3", "--storage", url])
    )
    task = build_task(config)
    outside = optuna.storages.RDBStorage(url)  # a second connection, as another process has
    victims: list[int] = []

    def build_model(regularizers):
        if not victims:
            [running] = [t for t in trials(url) if t.state == TrialState.RUNNING]
            outside.set_trial_state_values(running._trial_id, TrialState.FAIL)
            victims.append(running.number)
        return task.build_model(regularizers)

    out = io.StringIO()
    shown = SearchProgress(config.trials, config.epochs, out=out, live=False)
    worker = Worker(replace(task, build_model=build_model), config, shown)
    try:
        worker.run()
    finally:
        worker.close()
    found = assert_exact_study(url, 4)
    assert found[victims[0]].state == TrialState.FAIL
    assert all(t.state != TrialState.FAIL for t in found if t.number != victims[0])
    said = [line for line in out.getvalue().splitlines() if "from outside" in line]
    assert said == [
        f"trial {victims[0]:3d} was set FAIL from outside (optuna-dashboard, a script or the "
        "Optuna API) while this worker ran it; its result is dropped, going on with the next "
        "trial"
    ]
    assert shown.finished == 4


def test_trials_fewer_than_the_baselines_are_refused_before_anything_is_written(tmp_path):
    """A CIFAR-10 study measures 2 baselines: --trials 1 used to print "running 1 more" and
    run 2."""
    db = tmp_path / "few.db"
    config = SearchConfig.from_args(
        build_parser().parse_args(["--trials", "1", "--storage", f"sqlite:///{db}"])
    )
    task = build_task(config)
    two = replace(task, baselines={"a": task.baselines[next(iter(task.baselines))], "b": {}})
    quiet = SearchProgress(config.trials, config.epochs, out=io.StringIO(), live=False)
    with pytest.raises(
        UsageError,
        match=r"--trials 1 is fewer than the 2 baselines every "
        r"linear study measures first \(a, b\): use --trials 2 or more",
    ):
        run_study(two, config, build_task, quiet, print, "prog")
    assert not db.exists()


def test_a_thread_that_loses_the_database_dies_quietly_and_others_still_report():
    script = (
        "import threading, sqlalchemy.exc\n"
        "from search.workers import _quiet_storage_errors_in_threads\n"
        "_quiet_storage_errors_in_threads()\n"
        "def lose(): raise sqlalchemy.exc.OperationalError('SELECT 1', {}, Exception('gone'))\n"
        "def bug(): raise ValueError('a real bug')\n"
        "for target in (lose, bug):\n"
        "    thread = threading.Thread(target=target)\n"
        "    thread.start()\n"
        "    thread.join()\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0
    assert "ValueError: a real bug" in done.stderr
    assert "OperationalError" not in done.stderr


def _sampled(found: list) -> list[tuple]:
    """The params of the trials the sampler proposed (not a baseline or the start design)."""
    return [
        tuple(sorted(t.params.items()))
        for t in found
        if "baseline" not in t.user_attrs and "start_design" not in t.user_attrs
    ]


@pytest.mark.slow
def test_a_study_renamed_in_the_dashboard_resumes_with_new_configurations(tmp_path, serve):
    """optuna-dashboard's rename copies the trials and user attrs, not the worker counter."""
    import optuna

    from tests.search.conftest import DASHBOARD_CLI, get_json

    url = f"sqlite:///{tmp_path / 'r.db'}"
    flags = ("--sampler", "random", "--start-trials", "0", *FAST, "--storage", url)
    first = run_module("search.linear", "--trials", "6", *flags, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    base = serve(str(DASHBOARD_CLI), url, "--host", "127.0.0.1", "--port")
    [summary] = get_json(f"{base}/api/studies")["study_summaries"]
    request = urllib.request.Request(
        f"{base}/api/studies/{summary['study_id']}/rename",
        data=json.dumps({"study_name": "renamed"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 201
    assert optuna.get_all_study_names(url) == ["renamed"]

    resumed = run_module(
        "search.linear", "--trials", "12", *flags, "--study-name", "renamed", cwd=tmp_path
    )
    assert resumed.returncode == 0, resumed.stderr
    found = trials(url, "renamed")
    assert len(found) == 12 and all(t.state.is_finished() for t in found)
    sampled = _sampled(found)
    # The resumed worker sampled with the first run's seed and proposed its 5 trials again.
    assert len(set(sampled)) == len(sampled)


@pytest.mark.slow
def test_a_study_copied_to_another_database_while_it_runs_resumes_there(tmp_path):
    """optuna.copy_study copies a running trial that no worker of the copy owns."""
    import optuna

    source, copy = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    # The baseline trains every one of 3000 epochs: on a loaded machine 300 were over before
    # the poll saw them, and the copy caught the next trial instead (CI of 2026-11-30).
    flags = ("--trials", "2", "--epochs", "3000", "--pruner", "none", *BEATS, *ONE_AT_A_TIME)
    search = start_worker(*flags, "--storage", source, cwd=tmp_path)
    try:
        wait_until(lambda: running_with_epochs(source, 3, baseline=True))
        optuna.copy_study(from_study_name="linear", from_storage=source, to_storage=copy)
    finally:
        search.kill()
        search.communicate()
    [running] = [t for t in trials(copy) if t.state == TrialState.RUNNING]

    # The copy's running trial had no heartbeat, so no check ever failed it: the search
    # resumed on the copy waited for it for ever.
    resumed = run_module("search.linear", *flags, "--storage", copy, cwd=tmp_path, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    found = assert_exact_study(copy, 2)  # the failed trial counts under --trials
    assert found[running.number].state == TrialState.FAIL
    # The baseline it was measuring is measured again, with its parameters.
    again = [t for t in found if t.params == running.params and t.state == TrialState.COMPLETE]
    assert len(again) == 1
    assert workers_joined(copy) == 2  # the copy carried the counter: a new seed


@pytest.mark.slow
def test_a_worker_started_beside_another_says_it_shares_the_study(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    # The baseline trains every one of 3000 epochs: still running when the second has started.
    flags = ("--trials", "2", "--epochs", "3000", "--pruner", "none", *BEATS, *ONE_AT_A_TIME)
    flags += ("--storage", url)
    first = start_worker(*flags, cwd=tmp_path)
    try:
        wait_until(lambda: running_with_epochs(url, 3))
        second = run_module("search.linear", *flags, cwd=tmp_path)
    finally:
        first.communicate(timeout=300)
    assert second.returncode == 0, second.stderr
    # Each worker said "running 3 more", as if the study were its alone.
    said = re.match(
        r"study 'linear': (\d+) finished trials, 1 running elsewhere; "
        r"(this worker shares the (\d+) not started yet|all are started: this worker waits)",
        second.stdout,
    )
    assert said, second.stdout
    assert int(said[1]) + 1 + int(said[3] or 0) == 2
    assert_exact_study(url, 2)
