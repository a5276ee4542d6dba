"""Ctrl-C or SIGTERM in a search worker: fail the running trial, never cut a database write.

A SIGTERM (`kill`, a scheduler's stop, a container shutdown, a dying --jobs parent) is handled
like a Ctrl-C: both raise KeyboardInterrupt, and the first signal names the stop and sets the
exit status (128 + its number: 130 for SIGINT, 143 for SIGTERM).

Python raises KeyboardInterrupt wherever the main thread is when SIGINT arrives. Inside Optuna or
SQLAlchemy that can cut a trial's final write in two (Optuna's `_run_trial` then dies of an
UnboundLocalError and prints a traceback), and inside a garbage-collector callback Python can
only print "Exception ignored" while the worker trains on. So while a worker runs, a Ctrl-C is
raised only in the trial's own code; caught inside Optuna or SQLAlchemy it is tried again a
moment later, and between trials the worker loop raises it itself.
"""

import _thread
import multiprocessing
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from types import FrameType

import optuna
import sqlalchemy

from search.attrs import FAIL_REASON_ATTR

Objective = Callable[[optuna.Trial], float]
# Code a stop must not cut short: database writes (Optuna, SQLAlchemy), and the queue that
# carries a --jobs worker's progress to its parent: a put cut short can leave the queue's feeder
# thread without its closing sentinel, and the worker then hangs at exit waiting for it.
STORAGE_CODE = tuple(
    str(Path(module.__file__).parent) for module in (optuna, sqlalchemy, multiprocessing)
)
RETRY_SECONDS = 0.05
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
SIGNAL_NAMES = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}
# fail_reason of a trial stopped by one of them: "interrupted (Ctrl-C)"
INTERRUPTED = "interrupted"


def exit_status(signum: int) -> int:
    """The shell's status for a process stopped by `signum`: 130 for SIGINT, 143 for SIGTERM."""
    return 128 + signum


def resend_interrupt_soon(signum: int = signal.SIGINT) -> None:
    """Deliver `signum` to the main thread again a moment from now, from whatever it runs then."""
    resend = threading.Timer(RETRY_SECONDS, _thread.interrupt_main, (signum,))
    resend.daemon = True  # a process already on its way out need not wait for it
    resend.start()


@cache  # once per process: each call would wrap the hook again
def resend_swallowed_interrupts() -> None:
    """Raise a Ctrl-C again that Python could only print ("Exception ignored in ...")."""
    default_hook = sys.unraisablehook

    def hook(unraisable: "sys.UnraisableHookArgs") -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            resend_interrupt_soon()
        else:
            default_hook(unraisable)

    sys.unraisablehook = hook


class StopSignals:
    """While installed, SIGINT and SIGTERM raise KeyboardInterrupt; the first one is kept."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return SIGNAL_NAMES[self.signum or signal.SIGINT]

    @contextmanager
    def installed(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield  # signals reach the main thread only
            return
        previous = {signum: signal.signal(signum, self.on_signal) for signum in STOP_SIGNALS}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
        raise KeyboardInterrupt


class InterruptGate(StopSignals):
    """Holds a stop signal until the main thread is in a trial's own code (or the worker asks)."""

    def raise_if_requested(self) -> None:
        if self.requested:
            raise KeyboardInterrupt

    @contextmanager
    def installed(self) -> Iterator[None]:
        resend_swallowed_interrupts()
        with super().installed():
            yield

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
        where = whose_code(frame)
        if where == "trial":
            raise KeyboardInterrupt
        if where == "storage call of a trial":
            resend_interrupt_soon(signum)
        # Outside a trial the worker loop raises it before it starts the next one.


class Interruptible:
    """The objective: the one place a Ctrl-C is raised; says why on the failed trial."""

    def __init__(self, objective: Objective, gate: InterruptGate) -> None:
        self.objective, self.gate = objective, gate

    def __call__(self, trial: optuna.Trial) -> float:
        try:
            self.gate.raise_if_requested()
            return self.objective(trial)
        except KeyboardInterrupt:
            # Optuna marks the trial FAIL and re-raises; say why on the trial.
            trial.set_user_attr(FAIL_REASON_ATTR, f"{INTERRUPTED} ({self.gate.name})")
            raise


def whose_code(frame: FrameType | None) -> str:
    """'trial', 'storage call of a trial' or 'outside a trial', from the innermost frame out."""
    in_storage = False
    while frame is not None:
        if frame.f_code is Interruptible.__call__.__code__:
            return "storage call of a trial" if in_storage else "trial"
        in_storage = in_storage or frame.f_code.co_filename.startswith(STORAGE_CODE)
        frame = frame.f_back
    return "outside a trial"
