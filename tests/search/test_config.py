import dataclasses
import pickle

import pytest

from search import cifar as cifar_command
from search import linear as linear_command
from search.config import SearchConfig
from search.errors import UsageError


def config(*flags: str) -> SearchConfig:
    return SearchConfig.from_args(linear_command.build_parser().parse_args(flags))


def test_every_search_flag_is_a_field_and_every_field_a_flag():
    """A flag added to search.flags.make_parser but not to the config would be parsed and then
    silently ignored by the workers."""
    parser = cifar_command.build_parser()
    task_flags = {"help", "data", "cache_dir", "download", "val_size", "train_size", "test_size"}
    dests = {action.dest for action in parser._actions} - task_flags
    fields = {field.name for field in dataclasses.fields(SearchConfig)} - {"started_at"}
    assert dests == fields


def test_the_flags_arrive_typed_and_the_warmup_resolved():
    made = config("--trials", "7", "--epochs", "40", "--timeout", "90", "--fuse", "2")
    assert (made.trials, made.epochs, made.timeout, made.fuse) == (7, 40, 90.0, 2)
    assert made.warmup_epochs == 4  # the linear task's default: a tenth of the epochs
    assert config("--epochs", "40", "--warmup-epochs", "9").warmup_epochs == 9
    assert (made.worker_id, made.jobs, made.sampler, made.pruner) == (None, 1, "tpe", "median")


def test_it_is_frozen_and_travels_to_a_worker_process_whole():
    made = config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.trials = 3  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(made)) == made  # started_at too: --timeout's origin


def test_its_repr_never_shows_the_storage_password():
    made = config("--storage", "postgresql://user:secret@host/db")
    assert "secret" not in repr(made) and "trials=50" in repr(made)


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (("--heartbeat-interval", "5", "--grace-period", "5"), "must be above"),
        (("--epochs", "10", "--warmup-epochs", "11"), "--warmup-epochs 11 is more than"),
    ],
)
def test_flags_that_contradict_each_other_are_refused(flags, says):
    with pytest.raises(UsageError, match=says):
        config(*flags)
