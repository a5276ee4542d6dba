"""search.tools.replay against real searches: with a random sampler it equals a real pruned run."""

from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from search.tools.replay import default_warmups, replay_pruner
from tests.conftest import run_module

EPOCHS = 20  # the linear task then asks the pruner every 2 epochs
WARMUP = 2


@dataclass(frozen=True)
class Searches:
    root: Path
    unpruned: str  # storage URLs
    pruned: str
    fuse: int  # trials at once


def run_searches(root: Path, fuse: int) -> Searches:
    """The same random-sampler linear search run twice for real, `fuse` trials at a time:
    unpruned and median-pruned."""
    common = ("--trials", "14", "--epochs", str(EPOCHS), "--sampler", "random", "--seed", "1")
    common += ("--fuse", str(fuse))
    urls = {}
    for name, pruner in (("unpruned", ("--pruner", "none")), ("pruned", ())):
        urls[name] = f"sqlite:///{root / name}-{fuse}.db"
        flags = (*common, *pruner, "--warmup-epochs", str(WARMUP), "--storage", urls[name])
        search = run_module("search.linear", *flags, cwd=root)
        assert search.returncode == 0, search.stderr
    return Searches(root, urls["unpruned"], urls["pruned"], fuse)


@pytest.fixture(scope="module")
def random_searches(tmp_path_factory) -> Searches:
    """One trial at a time (--fuse 1)."""
    return run_searches(tmp_path_factory.mktemp("replay"), 1)


@pytest.fixture(scope="module")
def fused_searches(tmp_path_factory) -> Searches:
    """Three trials at a time in one fused worker (--fuse 3)."""
    return run_searches(tmp_path_factory.mktemp("replay-fused"), 3)


def trials_of(url: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name="linear", storage=url).get_trials()


def run_replay(searches: Searches, url: str, *flags: str):
    """`python -m search.tools.replay` on the linear study at `url`, as a user runs it."""
    return run_module(
        "search.tools.replay", "--storage", url, "--study-name", "linear", *flags, cwd=searches.root
    )


@pytest.mark.parametrize("searches", ["random_searches", "fused_searches"])
def test_replay_equals_the_real_pruned_search(request, searches):
    searches = request.getfixturevalue(searches)
    unpruned, pruned = trials_of(searches.unpruned), trials_of(searches.pruned)
    # The premise: a random sampler proposes the same trials whatever the pruner does.
    assert [t.params for t in unpruned] == [t.params for t in pruned]

    replayed = replay_pruner(unpruned, "median", WARMUP, EPOCHS, "linear", searches.fuse)

    really_pruned = [t for t in pruned if t.state == TrialState.PRUNED]
    assert really_pruned, "the real search pruned nothing: the comparison would prove little"
    assert replayed.pruned == len(really_pruned)
    assert replayed.epochs == sum(len(t.intermediate_values) for t in pruned)
    real_best = min((t for t in pruned if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    assert replayed.best.number == real_best.number
    assert replayed.best.value == pytest.approx(real_best.value)
    if searches.fuse > 1:  # here one trial at a time prunes 5 trials, not the real 4
        alone = replay_pruner(unpruned, "median", WARMUP, EPOCHS, "linear")
        assert (alone.pruned, alone.epochs) != (replayed.pruned, replayed.epochs)


def test_without_pruning_the_replay_is_the_recorded_search(random_searches):
    unpruned = trials_of(random_searches.unpruned)
    # A warm-up of all the epochs never lets the pruner stop a trial: it is not asked after the
    # last epoch.
    replayed = replay_pruner(unpruned, "median", EPOCHS, EPOCHS, "linear")
    assert replayed.pruned == 0
    assert replayed.epochs == sum(len(t.intermediate_values) for t in unpruned)
    assert replayed.best.number == min(unpruned, key=lambda t: t.value).number


def test_cli_prints_one_row_per_pruner_and_warmup(random_searches):
    result = run_replay(
        random_searches,
        random_searches.unpruned,
        *("--pruner", "median", "successive-halving", "--warmup-epochs", "1", "2"),
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("study 'linear': 14 finished trials")
    rows = [line.split() for line in lines[2:]]
    assert [(r[0], r[1]) for r in rows] == [
        ("recorded", "-"),
        ("median", "1"),
        ("median", "2"),
        ("successive-halving", "1"),
        ("successive-halving", "2"),
    ]
    assert rows[0][3] == "(100%)"
    assert all(int(r[2]) <= int(rows[0][2]) for r in rows)
    assert "note:" not in result.stdout


def test_cli_replays_a_fused_search_as_it_ran(fused_searches):
    """A fused recording, replayed one trial at a time, is told how many ran at once."""
    alone = run_replay(fused_searches, fused_searches.unpruned, "--warmup-epochs", str(WARMUP))
    assert alone.returncode == 0, alone.stderr
    assert "note: up to 3 trials ran at once when recorded; --fuse 3 replays them" in alone.stdout
    fused = run_replay(
        fused_searches, fused_searches.unpruned, "--warmup-epochs", str(WARMUP), "--fuse", "3"
    )
    assert fused.returncode == 0, fused.stderr
    assert "3 trials at a time" in fused.stdout.splitlines()[0] and "note:" not in fused.stdout
    row = fused.stdout.splitlines()[-1].split()
    real = trials_of(fused_searches.pruned)
    assert (row[0], int(row[2])) == ("median", sum(len(t.intermediate_values) for t in real))


def test_cli_says_a_recording_of_one_trial_at_a_time_is_replayed_so(random_searches):
    result = run_replay(random_searches, random_searches.unpruned, "--fuse", "4")
    assert result.returncode == 0, result.stderr
    assert "note: the recording ran one trial at a time; --fuse 1 replays it so" in result.stdout


def test_cli_says_a_pruned_recording_cannot_be_extended(random_searches):
    result = run_replay(random_searches, random_searches.pruned)
    assert result.returncode == 0, result.stderr
    assert "trials were pruned when recorded" in result.stdout


@pytest.mark.parametrize(
    "flags, message",
    [
        (("--study-name", "nope"), "no study named 'nope': the database(s) hold linear"),
        (("--warmup-epochs", "21"), "--warmup-epochs 21 is more than the study's 20 epochs"),
        (("--pruner", "none"), "invalid choice: 'none'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(random_searches, flags, message):
    result = run_replay(random_searches, random_searches.unpruned, *flags)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_database_is_refused_without_creating_it(tmp_path):
    result = run_module("search.tools.replay", "--storage", "sqlite:///absent.db", cwd=tmp_path)
    assert result.returncode == 2
    assert "no study database at absent.db" in result.stderr
    assert not (tmp_path / "absent.db").exists()


def test_default_warmups_double_up_to_half_the_epochs():
    assert default_warmups(8) == [1, 2, 4]
    assert default_warmups(100) == [1, 2, 4, 8, 16, 32]
    assert default_warmups(1) == [1]
