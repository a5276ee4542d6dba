"""Ctrl-C in a search worker: fail the running trial, never cut a database write in two.

Python raises KeyboardInterrupt wherever the main thread is when SIGINT arrives. Inside Optuna or
SQLAlchemy that can cut a trial's final write in two (Optuna's `_run_trial` then dies of an
UnboundLocalError and prints a traceback), and inside a garbage-collector callback Python can
only print "Exception ignored" while the worker trains on. So while a worker runs, a Ctrl-C is
raised only in the trial's own code; caught inside Optuna or SQLAlchemy it is tried again a
moment later, and between trials the worker loop raises it itself.
"""

import _thread
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

Objective = Callable[[optuna.Trial], float]
STORAGE_CODE = tuple(str(Path(module.__file__).parent) for module in (optuna, sqlalchemy))
RETRY_SECONDS = 0.05


def resend_interrupt_soon() -> None:
    """Deliver SIGINT to the main thread again a moment from now, from whatever it runs then."""
    resend = threading.Timer(RETRY_SECONDS, _thread.interrupt_main)
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


class InterruptGate:
    """Holds a Ctrl-C until the main thread is in a trial's own code (or the worker asks)."""

    def __init__(self) -> None:
        self.requested = False

    def raise_if_requested(self) -> None:
        if self.requested:
            raise KeyboardInterrupt

    @contextmanager
    def installed(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield  # signals reach the main thread only
            return
        resend_swallowed_interrupts()
        previous = signal.signal(signal.SIGINT, self.on_sigint)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def on_sigint(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        where = whose_code(frame)
        if where == "trial":
            raise KeyboardInterrupt
        if where == "storage call of a trial":
            resend_interrupt_soon()
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
            trial.set_user_attr("fail_reason", "interrupted (Ctrl-C)")
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
