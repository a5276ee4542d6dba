"""The search's display: bars on a terminal, plain lines in a pipe, one display for --jobs."""

import fcntl
import io
import os
import pty
import re
import struct
import subprocess
import sys
import termios

from search.progress import SLOW_EPOCH_SECONDS, SearchProgress, TrialLine, shortening_hints
from tests.conftest import project_env, run_module

TRIAL_LINE = re.compile(r"^trial +(\d+) (COMPLETE|PRUNED|FAIL)")


def _line(number: int, value: float | None = 0.5, state: str = "COMPLETE") -> TrialLine:
    return TrialLine(number, state, value, 8, 12.0, "dropout=0.1", None)


def _run_trial(progress: SearchProgress, number: int, epoch_seconds: float, epochs: int = 8):
    progress.trial_started(number, at=0.0)
    for epoch in range(1, epochs + 1):
        progress.epoch_done(number, epoch, 1.0 / epoch, at=epoch * epoch_seconds)
    progress.trial_finished(_line(number))


def test_lines_without_a_terminal_say_each_trial_and_only_slow_epochs():
    out = io.StringIO()
    progress = SearchProgress(trials=3, epochs=8, out=out, live=False)
    progress.start(finished=0, best=None)
    _run_trial(progress, 0, epoch_seconds=SLOW_EPOCH_SECONDS / 10)
    _run_trial(progress, 1, epoch_seconds=SLOW_EPOCH_SECONDS * 2)
    progress.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert [line.split()[1] for line in lines if TRIAL_LINE.match(line)] == ["0", "1"]
    epoch_lines = [line for line in lines if " epoch " in line]
    assert len(epoch_lines) == 8 and all(
        line.startswith("trial   1 epoch ") for line in epoch_lines
    )
    assert epoch_lines[0] == "trial   1 epoch 1/8 val_loss=1.0000 (20.0s)"
    [estimate] = [line for line in lines if line.startswith("estimate:")]
    assert lines.index(estimate) == 1  # right after the first trial
    assert "2 more trials" in estimate and "shorten" not in estimate  # minutes, not hours


def test_an_estimate_of_one_trial_says_trial():
    out = io.StringIO()
    progress = SearchProgress(trials=2, epochs=8, out=out, live=False)
    progress.start(finished=0, best=None)
    _run_trial(progress, 0, epoch_seconds=1.0)
    progress.close()
    assert "estimate: 1 more trial, each at most" in out.getvalue()


def test_an_estimate_over_an_hour_says_what_shortens_it():
    out = io.StringIO()
    hints = {"--device cuda": "train on a GPU", "--jobs 2": "one worker per core"}
    progress = SearchProgress(trials=50, epochs=8, jobs=1, hints=hints, out=out, live=False)
    progress.start(finished=0, best=None)
    _run_trial(progress, 0, epoch_seconds=40.0)
    progress.close()
    [estimate] = [line for line in out.getvalue().splitlines() if line.startswith("estimate:")]
    assert "49 more trials" in estimate and "(8 epochs of 40 s)" in estimate
    assert "at most 4 h" in estimate  # 49 x 8 x 40 s = 4 h 21 min
    assert (
        "to shorten it: --device cuda (train on a GPU), --jobs 2 (one worker per core)" in estimate
    )


def test_a_terminal_gets_bars_with_the_best_value_and_the_trial_lines_above_them():
    out = io.StringIO()
    progress = SearchProgress(trials=4, epochs=8, out=out, live=True)
    progress.start(finished=1, best=0.7)
    progress.trial_started(5, at=0.0)
    progress.epoch_done(5, 1, 0.9, at=1.0)
    text = out.getvalue()
    assert "trials 1/4" in text and "best val_loss 0.7000" in text and "trial 5: epochs 1/8" in text
    progress.trial_finished(_line(5, value=0.25))
    progress.close()
    text = out.getvalue()
    assert "\r" in text and "trials 2/4" in text and "best val_loss 0.2500" in text
    assert "trial   5 COMPLETE val_loss=0.2500" in text


def test_a_piped_search_prints_one_line_per_trial_and_no_carriage_returns(tmp_path):
    url = f"sqlite:///{tmp_path / 'linear.db'}"
    run = run_module(
        "search.linear", "--trials", "4", "--epochs", "5", "--storage", url, cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr
    assert "\r" not in run.stdout + run.stderr
    numbers = [m.group(1) for m in map(TRIAL_LINE.match, run.stdout.splitlines()) if m]
    assert numbers == ["0", "1", "2", "3"]
    assert sum(line.startswith("estimate: 3 more trials") for line in run.stdout.splitlines()) == 1


def test_jobs_show_one_display_for_the_whole_search(tmp_path):
    url = f"sqlite:///{tmp_path / 'linear.db'}"
    run = run_module(
        "search.linear", "--trials", "6", "--epochs", "5", "--jobs", "2", "--storage", url,
        cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    numbers = sorted(int(m.group(1)) for m in map(TRIAL_LINE.match, run.stdout.splitlines()) if m)
    assert numbers == list(range(6))  # each trial once, from the parent, not once per worker
    assert sum(line.startswith("estimate:") for line in run.stdout.splitlines()) == 1


def test_a_search_on_a_terminal_draws_live_bars(tmp_path):
    """The real CLI on a pseudo-terminal, as a user's shell runs it."""
    primary, secondary = pty.openpty()
    # 40 rows of 120 columns: a fresh pty has 0 columns, where tqdm draws nothing.
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    url = f"sqlite:///{tmp_path / 'linear.db'}"
    process = subprocess.Popen(
        [sys.executable, "-m", "search.linear", "--trials", "3", "--epochs", "5", "--storage", url],
        cwd=tmp_path,
        env=project_env(),
        stdin=subprocess.DEVNULL,
        stdout=secondary,
        stderr=secondary,
    )
    os.close(secondary)
    chunks = []
    while True:
        try:
            chunk = os.read(primary, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(primary)
    assert process.wait(timeout=120) == 0
    text = b"".join(chunks).decode()
    assert "trials 3/3 |" in text and "best val_loss" in text and "epochs" in text
    assert re.search(r"trial   2 (COMPLETE|PRUNED)", text)


def test_a_trial_stopped_at_chance_says_so_and_hints_fit_the_search():
    stuck = TrialLine(7, "PRUNED", None, 1, 3.0, "activation=sigmoid", None, at_chance=True)
    assert "PRUNED   at chance after epoch 1 " in stuck.text()
    assert " at epoch 1 " in TrialLine(8, "PRUNED", None, 1, 3.0, "dropout=0.1", None).text()
    # A CIFAR-10 search already at 10,000 training images is not told to use 10,000.
    assert "--train-size 10000" in shortening_hints("cifar", "cpu", 1, 45_000)
    assert "--train-size 10000" not in shortening_hints("cifar", "cpu", 1, 10_000)


def test_the_bar_counts_the_trials_of_other_workers_and_shows_one_estimate():
    out = io.StringIO()
    progress = SearchProgress(trials=4, epochs=8, out=out, live=True)
    progress.start(finished=0, best=None)
    _run_trial(progress, 0, epoch_seconds=1.0)
    # A worker started by hand beside others counted only its own trials and froze there.
    progress.study_finished(3)
    progress.study_finished(2)  # an older count changes nothing
    progress.close()
    text = out.getvalue()
    assert "trials 3/4" in text and "trials 2/4" not in text.split("trials 3/4")[-1]
    # One estimate: the estimate line's, not tqdm's rate since the start beside it.
    [per_trial] = re.findall(r"estimate: 3 more trials, each at most ([^(]+) \(", text)
    assert f"at most {per_trial} left" in text
    assert "<" not in text.split("trials 3/4")[-1]
