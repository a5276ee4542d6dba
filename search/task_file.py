"""Task files: `--task path/to/task.py:build_task` or `--task package.module:build_task`.

A task file defines a function that takes no arguments and returns a `search.TaskSpec`
(docs/own-model.md). Its source (the file's path and sha256) is stored on the study, so that
--jobs workers, hand-started workers and the report rebuild the same task, and a study is not
resumed with a file that has changed since.
"""

import argparse
import functools
import hashlib
import importlib
import importlib.util
import sys
from dataclasses import replace
from pathlib import Path

from search.config import SearchConfig
from search.errors import UsageError
from search.spec import BUILT_IN_TASKS, TaskSpec
from search.task import Task, TaskBuilder, resolve_device

# Loaded specs by source, so that a process calls a task file's function once (the CLI reads
# the flags' defaults from it before it builds the task).
_loaded: dict[tuple[str, str], TaskSpec] = {}


def load_spec(reference: str) -> tuple[TaskSpec, dict]:
    """The TaskSpec `reference` ("file.py:function" or "module:function") returns, and its
    source {"task": reference with the file's absolute path, "sha256": of the file}."""
    where, _, function = reference.rpartition(":")
    if not where or not function.isidentifier():
        raise UsageError(
            f"--task {reference!r}: give path/to/task.py:function or package.module:function"
        )
    is_file = where.endswith(".py") or "/" in where or "\\" in where
    if is_file:
        path = Path(where).resolve()
        if not path.is_file():
            raise UsageError(f"--task {reference!r}: no such file {where}")
        resolved = f"{path}:{function}"
    else:
        module = _import(reference, where)
        path = Path(module.__file__ or "")
        resolved = reference
    source = {"task": resolved, "sha256": file_sha256(path)}
    key = (resolved, source["sha256"])
    if key not in _loaded:
        if is_file:
            module = _import_file(reference, path)
        _loaded[key] = _call(reference, module, function)
    return _loaded[key], source


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _import(reference: str, name: str):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name and name.startswith(error.name):
            raise UsageError(
                f"--task {reference!r}: no module named {error.name!r} (run from the folder "
                "that holds it, or give the file's path)"
            ) from None
        raise UsageError(
            f"--task {reference!r}: importing it raised {_first_line(error)}"
        ) from None
    except Exception as error:
        raise UsageError(
            f"--task {reference!r}: importing it raised {_first_line(error)}"
        ) from None


def _import_file(reference: str, path: Path):
    """Import a task file as a module of its own; its folder goes on sys.path, so that it can
    import the modules beside it."""
    name = f"regsearch_task_{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"--task {reference!r}: {path} cannot be imported as Python")
    module = importlib.util.module_from_spec(spec)
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[name]
        raise UsageError(
            f"--task {reference!r}: importing it raised {_first_line(error)}"
        ) from None
    return module


def _call(reference: str, module, function: str) -> TaskSpec:
    builder = getattr(module, function, None)
    if not callable(builder):
        raise UsageError(f"--task {reference!r}: it defines no function {function}()")
    try:
        spec = builder()
    except Exception as error:
        raise UsageError(
            f"--task {reference!r}: {function}() raised {_first_line(error)}"
        ) from None
    if not isinstance(spec, TaskSpec):
        raise UsageError(
            f"--task {reference!r}: {function}() returned {type(spec).__name__}, not a "
            "search.TaskSpec"
        )
    if spec.name in BUILT_IN_TASKS:
        raise UsageError(
            f"--task {reference!r}: the name {spec.name!r} is a built-in task's; name yours "
            "otherwise"
        )
    return spec


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def task_from_spec(spec: TaskSpec, source: dict | None, config: SearchConfig) -> Task:
    """The Task a search with `config` trains: its epochs and batch size replace the spec's."""
    spec = replace(spec, epochs=config.epochs, batch_size=config.batch_size)
    task = spec.prepare(resolve_device(config.device), config.seed, config.warmup_epochs)
    return replace(task, source=source)


def build_task(reference: str, config: SearchConfig) -> Task:
    """The task of `--task reference` (what every worker process calls; picklable by name)."""
    spec, source = load_spec(reference)
    return task_from_spec(spec, source, config)


def task_builder(args: argparse.Namespace) -> TaskBuilder:
    """`build_task` of search.run's own flag, --task."""
    return functools.partial(build_task, args.task)


def task_from_source(source: dict, settings: dict, device: str) -> Task:
    """Rebuild a study's task from its stored source and settings (the report's re-training);
    refused if the file has changed or gone since the study was made."""
    where = source["task"].rpartition(":")[0]
    file = Path(where)
    if file.suffix == ".py" and not file.is_file():
        raise UsageError(
            f"the study's task file {where} is gone: restore it to re-train, or use --repeats 0"
        )
    spec, now = load_spec(source["task"])
    if now["sha256"] != source["sha256"]:
        raise UsageError(
            f"the task {source['task']} has changed since the study was made (sha256 "
            f"{source['sha256'][:12]}, now {now['sha256'][:12]}): restore that version to "
            "re-train, or use --repeats 0"
        )
    return task_for_settings(spec, source, settings, device)


def task_for_settings(spec: TaskSpec, source: dict | None, settings: dict, device: str) -> Task:
    """`spec` as the study with these stored settings searched it (seed, epochs, warm-up)."""
    spec = replace(spec, epochs=settings["epochs"], batch_size=settings["batch_size"])
    task = spec.prepare(resolve_device(device), settings["seed"], settings["warmup_epochs"])
    return replace(task, source=source)
