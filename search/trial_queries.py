"""Questions a worker asks before every trial, answered in SQL without loading the study.

A worker counts the study's trials under the database-wide lock before it starts one. Loading
every trial to count them (params, attributes, every epoch's value) made that count, and with it
the whole fleet's rate of starting trials, grow with the study: 66 ms at 100 trials, 1.7 s at
3,000 on the AMD machine (issue 16). Here every answer is a few index lookups, so that it costs
the same at 100 trials and at 5,000. Two of the indexes are not in Optuna's schema: on a trial's
(study, state), for the running and waiting trials, and on a user attribute's key, for the
baselines; `add_indexes` creates them in every study database a worker opens.

Storages that are not SQL (in-memory, a gRPC proxy) fall back to reading the trials.
"""

import json
from dataclasses import dataclass
from datetime import UTC, datetime

import optuna
import sqlalchemy
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial, TrialState

from search.attrs import BASELINE_ATTR, WORKER_ATTR

_INDEXES = (
    "CREATE INDEX IF NOT EXISTS ix_regsearch_trials_study_id_state ON trials (study_id, state)",
    "CREATE INDEX IF NOT EXISTS ix_regsearch_trial_user_attributes_key "
    "ON trial_user_attributes (key)",
)


@dataclass(frozen=True)
class TrialCounts:
    total: int  # every trial, waiting ones included
    running: int
    waiting: int  # enqueued, not started

    @property
    def started(self) -> int:
        return self.total - self.waiting

    @property
    def finished(self) -> int:
        return self.total - self.waiting - self.running


def _sql_backend(storage: optuna.storages.BaseStorage) -> optuna.storages.RDBStorage | None:
    # Optuna wraps an RDBStorage in a per-process cache, which may not know other workers' new
    # trials; the database itself does.
    backend = getattr(storage, "_backend", storage)
    return backend if isinstance(backend, optuna.storages.RDBStorage) else None


def add_indexes(storage: optuna.storages.BaseStorage) -> None:
    """Create the indexes the queries below need, if missing (call under the database lock:
    two servers creating one index at once can fail)."""
    rdb = _sql_backend(storage)
    if rdb is None or rdb.engine.dialect.name not in ("sqlite", "postgresql"):
        return
    with rdb.engine.begin() as connection:
        for statement in _INDEXES:
            connection.execute(sqlalchemy.text(statement))


def trial_counts(storage: optuna.storages.BaseStorage, study_id: int) -> TrialCounts:
    """The study's trials, running and waiting trials, as the database says now."""
    rdb = _sql_backend(storage)
    if rdb is None:
        states = [t.state for t in storage.get_all_trials(study_id, deepcopy=False)]
        return TrialCounts(
            len(states), states.count(TrialState.RUNNING), states.count(TrialState.WAITING)
        )
    trials = models.TrialModel

    def count(state: TrialState) -> sqlalchemy.ScalarSelect:
        query = sqlalchemy.select(sqlalchemy.func.count(trials.trial_id))
        return query.where(trials.study_id == study_id, trials.state == state).scalar_subquery()

    # Optuna numbers a study's trials 0, 1, 2, ... as it creates them and never deletes one, so
    # the newest trial's number + 1 is their count: one index lookup where COUNT(*) would walk
    # an index entry per trial.
    newest = (
        sqlalchemy.select(trials.number)
        .where(trials.study_id == study_id)
        .order_by(trials.trial_id.desc())
        .limit(1)
        .scalar_subquery()
    )
    query = sqlalchemy.select(
        sqlalchemy.func.coalesce(newest + 1, 0),
        count(TrialState.RUNNING),
        count(TrialState.WAITING),
    )
    with sqlalchemy.orm.Session(rdb.engine) as session:
        return TrialCounts(*session.execute(query).one())


def baseline_trials(
    storage: optuna.storages.BaseStorage,
    study_id: int,
    finished: dict[int, FrozenTrial] | None = None,
) -> list[FrozenTrial]:
    """Every trial of the study that measured, or waits to measure, a baseline.

    `finished`, kept by the caller between calls, holds the finished ones: a finished trial no
    longer changes, so only the others are read again (a worker asks before every trial, and
    reading each baseline trial took several queries, round trips on PostgreSQL).
    """
    rdb = _sql_backend(storage)
    if rdb is None:
        trials = storage.get_all_trials(study_id, deepcopy=False)
        return [t for t in trials if BASELINE_ATTR in t.user_attrs]
    finished = {} if finished is None else finished
    attrs, trials = models.TrialUserAttributeModel, models.TrialModel
    # Two steps, so that the planner cannot prefer walking the study's trials: the baselines of
    # every study in the database by the key's index, then those of this study by primary key.
    with sqlalchemy.orm.Session(rdb.engine) as session:
        marked = session.scalars(
            sqlalchemy.select(attrs.trial_id).where(attrs.key == BASELINE_ATTR)
        )
        query = (
            sqlalchemy.select(trials.trial_id)
            .where(trials.trial_id.in_(marked.all()), trials.study_id == study_id)
            .order_by(trials.trial_id)
        )
        trial_ids = session.scalars(query).all()
    found = []
    for trial_id in trial_ids:
        trial = finished.get(trial_id) or rdb.get_trial(trial_id)
        if trial.state.is_finished():
            finished[trial_id] = trial
        found.append(trial)
    return found


def highest_worker_id(storage: optuna.storages.BaseStorage, study_id: int) -> int:
    """The highest worker id the study's trials record (WORKER_ATTR), -1 if none does."""
    rdb = _sql_backend(storage)
    if rdb is None:
        trials = storage.get_all_trials(study_id, deepcopy=False)
        return max((t.system_attrs.get(WORKER_ATTR, -1) for t in trials), default=-1)
    attrs, trials = models.TrialSystemAttributeModel, models.TrialModel
    query = (
        sqlalchemy.select(attrs.value_json)
        .join(trials, trials.trial_id == attrs.trial_id)
        .where(attrs.key == WORKER_ATTR, trials.study_id == study_id)
    )
    with sqlalchemy.orm.Session(rdb.engine) as session:
        return max((json.loads(value) for value in session.scalars(query)), default=-1)


def orphaned_trial_ids(
    storage: optuna.storages.BaseStorage, study_id: int, grace_period: float
) -> list[int]:
    """RUNNING trials with no heartbeat at all that started over `grace_period` seconds ago.

    Optuna's stale check skips a running trial without a heartbeat; a study copied while it
    ran (optuna.copy_study, optuna-dashboard's rename) holds such trials, whose worker writes
    to the original, and a search resumed on the copy would wait for them for ever.
    """
    rdb = _sql_backend(storage)
    if rdb is None:
        return []
    trials, beats = models.TrialModel, models.TrialHeartbeatModel
    with sqlalchemy.orm.Session(rdb.engine) as session:
        query = (
            sqlalchemy.select(trials.trial_id, trials._datetime_start_utc)
            .outerjoin(beats, beats.trial_id == trials.trial_id)
            .where(
                trials.study_id == study_id,
                trials.state == TrialState.RUNNING,
                beats.trial_heartbeat_id.is_(None),
            )
        )
        rows = session.execute(query).all()
    now = datetime.now(UTC).replace(tzinfo=None)  # Optuna stores naive UTC
    return [
        trial_id
        for trial_id, started in rows
        if started is None or (now - started).total_seconds() > grace_period
    ]


def running_heartbeats(
    storage: optuna.storages.BaseStorage, study_id: int, started_before: datetime
) -> dict[int, tuple[int, datetime]]:
    """The study's RUNNING trials started before `started_before` (UTC without tzinfo, as
    Optuna 5 stores it) that record heartbeats: {trial id: (trial number, last heartbeat)}.

    Empty for storages that are not SQL: they keep no heartbeats a worker could read.
    """
    rdb = _sql_backend(storage)
    if rdb is None:
        return {}
    trials, beats = models.TrialModel, models.TrialHeartbeatModel
    query = (
        sqlalchemy.select(trials.trial_id, trials.number, beats.heartbeat)
        .join(beats, beats.trial_id == trials.trial_id)
        .where(
            trials.study_id == study_id,
            trials.state == TrialState.RUNNING,
            trials._datetime_start_utc < started_before,
        )
    )
    with sqlalchemy.orm.Session(rdb.engine) as session:
        return {trial_id: (number, beat) for trial_id, number, beat in session.execute(query)}


def database_now(storage: optuna.storages.BaseStorage) -> datetime | None:
    """The database's clock, as Optuna reads it to time heartbeats; None if not SQL."""
    rdb = _sql_backend(storage)
    if rdb is None:
        return None
    with sqlalchemy.orm.Session(rdb.engine) as session:
        return session.execute(sqlalchemy.select(sqlalchemy.func.now())).scalar()


def report_together(
    storage: optuna.storages.BaseStorage, values: dict[int, tuple[int, float]]
) -> list[int]:
    """Store each running trial's intermediate value, {trial_id: (step, value)}, in one
    transaction; the ids of the trials that are no longer running (nothing is stored for them).

    `trial.report` is a transaction per value, and Optuna's writer behind it loads the trial
    first: on SQLite most of an epoch of the linear task. A fused worker (search/fused_worker.py)
    stores the epoch of all its trials with one state query and one insert.
    """
    rdb = _sql_backend(storage)
    if rdb is None:
        ended = []
        for trial_id, (step, value) in values.items():
            try:
                storage.set_trial_intermediate_value(trial_id, step, value)
            except optuna.exceptions.UpdateFinishedTrialError:
                ended.append(trial_id)
        return ended
    trials, table = models.TrialModel, models.TrialIntermediateValueModel
    with rdb.engine.begin() as connection:
        states = connection.execute(
            sqlalchemy.select(trials.trial_id, trials.state).where(trials.trial_id.in_(values))
        ).all()
        running = [trial_id for trial_id, state in states if state == TrialState.RUNNING]
        rows = []
        for trial_id in running:
            step, value = values[trial_id]
            stored, kind = table.intermediate_value_to_stored_repr(value)
            rows.append(
                {
                    "trial_id": trial_id,
                    "step": step,
                    "intermediate_value": stored,
                    "intermediate_value_type": kind,
                }
            )
        if rows:
            connection.execute(sqlalchemy.insert(table), rows)
    return [trial_id for trial_id in values if trial_id not in running]
