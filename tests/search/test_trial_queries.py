"""A worker's counts come from SQL: they agree with the trials and do not grow with the study."""

import statistics
import time

import optuna
import pytest
from optuna.trial import TrialState

from search.attrs import BASELINE_ATTR
from search.space import SearchSpace
from search.storage import database_url
from search.tools.scale import synthetic_trials
from search.trial_queries import add_indexes, baseline_trials, trial_counts

SPACE = SearchSpace(dropout=(0.0, 0.9), weight_decay=(1e-4, 1.0), l1=(1e-6, 1.0), patience=(1, 8))


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'queries.db'}"
    return database_url(request.getfixturevalue("postgres_database")[1])


def test_counts_and_baselines_agree_with_the_trials_of_that_study_alone(url):
    storage = optuna.storages.get_storage(url)  # cached, as the workers open it
    other = optuna.create_study(storage=storage, study_name="other")
    other.add_trials(synthetic_trials(SPACE, 4, 5, seed=1))
    study = optuna.create_study(storage=storage, study_name="mine")
    study.add_trials(synthetic_trials(SPACE, 4, 12, seed=2))
    study.enqueue_trial({}, user_attrs={BASELINE_ATTR: "reference (dropout 0.25)"})
    study.enqueue_trial({}, user_attrs={BASELINE_ATTR: "no regularization (reference)"})
    study.enqueue_trial({"dropout": 0.5})  # stays WAITING
    running = study.ask()  # takes the first baseline: RUNNING
    failed = study.ask()
    study.tell(failed, state=TrialState.FAIL)
    trials = study.get_trials(deepcopy=False)

    add_indexes(storage)
    add_indexes(storage)  # a second worker opening the database
    counts = trial_counts(storage, study._study_id)
    assert counts.total == len(trials) == 15
    assert counts.running == 1 and counts.waiting == 1
    assert counts.finished == sum(t.state.is_finished() for t in trials) == 13
    assert counts.started == 14
    baselines = baseline_trials(storage, study._study_id)
    assert [t.number for t in baselines] == [running.number, failed.number]
    assert [t.state for t in baselines] == [TrialState.RUNNING, TrialState.FAIL]
    # With the caller's cache a finished baseline is read once, a running one every time.
    finished: dict = {}
    first = baseline_trials(storage, study._study_id, finished)
    assert [t.number for t in finished.values()] == [failed.number]
    study.tell(running, 0.5)
    again = baseline_trials(storage, study._study_id, finished)
    assert [t.state for t in again] == [TrialState.COMPLETE, TrialState.FAIL]
    assert again[1] is first[1] and len(finished) == 2


def _median_seconds(call, repeats: int = 15) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


@pytest.mark.slow
def test_the_count_does_not_load_the_trials(tmp_path):
    """The count on a 1,000-trial study costs about what it costs on a 100-trial one, while
    loading the trials, as the count did before, costs many times more (a ratio, not a time)."""
    studies = {}
    for size in (100, 1000):
        storage = optuna.storages.get_storage(f"sqlite:///{tmp_path / f'{size}.db'}")
        study = optuna.create_study(storage=storage, study_name="big")
        study.add_trials(synthetic_trials(SPACE, 8, size, seed=size))
        study.enqueue_trial({}, user_attrs={BASELINE_ATTR: "reference (dropout 0.25)"})
        add_indexes(storage)
        studies[size] = study
    backend = {size: s._storage._backend for size, s in studies.items()}

    def cost(size: int, query) -> float:
        return _median_seconds(lambda: query(studies[size]._storage, studies[size]._study_id))

    def load(storage, study_id):
        return len(storage._backend.get_all_trials(study_id, deepcopy=False))

    assert load(studies[1000]._storage, studies[1000]._study_id) == 1001
    assert trial_counts(backend[1000], studies[1000]._study_id).total == 1001
    loading = cost(1000, load) / cost(100, load)
    counting = cost(1000, trial_counts) / cost(100, trial_counts)
    baselines = cost(1000, baseline_trials) / cost(100, baseline_trials)
    assert loading > 4, loading  # the measurement sees a cost that grows with the study
    assert counting < 2, counting
    assert baselines < 2, baselines
