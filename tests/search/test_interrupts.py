import signal
import subprocess
import sys
import textwrap

import optuna
import sqlalchemy
from sqlalchemy import event

from search.interrupts import InterruptGate, Interruptible, whose_code


def run_script(code: str) -> subprocess.CompletedProcess:
    script = textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        # A shell ignores SIGINT in the commands it starts in the background (pytest ... &),
        # and a child inherits that: Python would then install no Ctrl-C handler at all.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def test_whose_code_tells_a_trial_s_own_code_from_its_storage_calls():
    engine = sqlalchemy.create_engine("sqlite://")
    seen = {}

    @event.listens_for(engine, "before_cursor_execute")
    def inside_sqlalchemy(*args):
        seen["storage"] = whose_code(sys._getframe())

    def objective(trial: optuna.Trial) -> float:
        seen["trial"] = whose_code(sys._getframe())
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT 1"))
        return 0.0

    study = optuna.create_study()
    study.optimize(Interruptible(objective, InterruptGate()), n_trials=1)
    assert seen == {"trial": "trial", "storage": "storage call of a trial"}
    assert whose_code(sys._getframe()) == "outside a trial"


def test_a_ctrl_c_during_a_storage_call_is_raised_after_it_in_the_trial(tmp_path):
    # The objective spends about half its time in SQLite commits; the interrupt must not cut one.
    done = run_script(
        f"""
        import os, signal, threading, traceback
        import optuna
        import torch
        from search.interrupts import InterruptGate, Interruptible

        optuna.logging.set_verbosity(optuna.logging.ERROR)
        study = optuna.create_study(storage="sqlite:///{tmp_path / "i.db"}")
        def objective(trial):
            threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
            for step in range(5_000):
                trial.report(1.0, step)
                torch.ones(256, 256) @ torch.ones(256, 256)  # the trial's own work
            return 1.0
        gate = InterruptGate()
        try:
            with gate.installed():
                study.optimize(Interruptible(objective, gate), n_trials=1)
        except KeyboardInterrupt as interrupt:
            *_, caller, handler = traceback.extract_tb(interrupt.__traceback__)
            print("raised by", handler.name, "in", caller.name)
        (trial,) = study.trials
        print(trial.state.name, trial.user_attrs["fail_reason"])
        """
    )
    assert done.stdout.splitlines() == [
        "raised by on_signal in objective",
        "FAIL interrupted (Ctrl-C)",
    ], done.stderr
    assert done.stderr == ""


def test_a_ctrl_c_outside_a_trial_waits_for_the_worker_loop():
    done = run_script(
        """
        import os, signal
        from search.interrupts import InterruptGate

        gate = InterruptGate()
        with gate.installed():
            os.kill(os.getpid(), signal.SIGINT)
            print("held:", gate.requested)
            try:
                gate.raise_if_requested()
            except KeyboardInterrupt:
                print("raised by the loop")
        os.kill(os.getpid(), signal.SIGINT)
        """
    )
    assert done.stdout.splitlines() == ["held: True", "raised by the loop"]
    assert "KeyboardInterrupt" in done.stderr  # the default handler is back after the block


def test_a_ctrl_c_swallowed_by_a_gc_callback_is_raised_again_quietly():
    # What a SIGINT landing in SQLAlchemy's weakref callback does: Python can't raise it there.
    done = run_script(
        """
        import time, weakref
        from search.interrupts import resend_swallowed_interrupts

        resend_swallowed_interrupts()
        class Thing:
            pass
        def callback(ref):
            raise KeyboardInterrupt
        thing = Thing()
        ref = weakref.ref(thing, callback)
        try:
            del thing
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                sum(range(1000))
            print("trained on")
        except KeyboardInterrupt:
            print("interrupted")
        """
    )
    assert done.stdout.strip() == "interrupted"
    assert done.stderr == ""
