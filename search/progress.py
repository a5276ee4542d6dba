"""What a running search shows: live bars on a terminal, plain lines anywhere else.

On a terminal (stdout is a TTY) a tqdm bar counts the study's finished trials out of --trials,
with the best validation loss so far, the elapsed time and an ETA, and a second bar counts the
epochs of the running trial(s); each finished trial is printed above the bars as a line. When
stdout is a pipe, a log file or nohup's nohup.out, nothing is redrawn: one line per trial, and
one line per epoch for trials whose epochs are slow enough that a silent minute would look hung.

After the first trial of the run, one line estimates the whole search's time on this machine,
and says what shortens it when that is more than an hour.

The display lives in the process the user started. With --jobs the workers send it events
through a queue (`QueueProgress`, `forward_events`), so N workers show one display.
"""

import itertools
import math
import os
import statistics
import sys
import threading
from dataclasses import dataclass
from typing import TextIO

from optuna.trial import FrozenTrial, TrialState
from tqdm import tqdm

from search.attrs import APPLIED_ATTR, AT_CHANCE_ATTR
from search.space import SearchSpace
from search.study import baseline_name

# Epochs slower than this get a line of their own when the output is not a terminal.
SLOW_EPOCH_SECONDS = 10.0
# Above this the estimate line says what shortens the search.
LONG_SEARCH_SECONDS = 3600.0


@dataclass(frozen=True)
class TrialLine:
    """A finished trial as the progress line shows it; small enough to send between processes."""

    number: int
    state: str  # TrialState name
    value: float | None
    last_step: int | None
    seconds: float
    regularizers: str
    baseline: str | None
    at_chance: bool = False  # stopped after its first epoch, still at the loss of guessing

    @classmethod
    def of(cls, trial: FrozenTrial, space: SearchSpace) -> "TrialLine":
        return cls(
            number=trial.number,
            state=trial.state.name,
            value=trial.value,
            last_step=trial.last_step,
            seconds=trial.duration.total_seconds() if trial.duration else 0.0,
            # The values it applied, "off" spelled out, as the dashboard shows them.
            regularizers=trial.user_attrs.get(APPLIED_ATTR) or space.describe(trial.params),
            baseline=baseline_name(trial),
            at_chance=trial.user_attrs.get(AT_CHANCE_ATTR, False),
        )

    def text(self) -> str:
        value = "-" if self.value is None else f"{self.value:.4f}"
        pruned = self.state == TrialState.PRUNED.name and self.last_step
        detail = f" at epoch {self.last_step}" if pruned else ""
        if self.at_chance:
            detail = f" at chance after epoch {self.last_step}"
        marker = f" [baseline: {self.baseline}]" if self.baseline else ""
        return (
            f"trial {self.number:3d} {self.state:8s}{detail} val_loss={value} "
            f"{self.regularizers} ({self.seconds:.1f}s){marker}"
        )


def format_duration(seconds: float) -> str:
    """1 h 05 min, 12 min, 40 s, 0.2 s."""
    if seconds < 9.5:
        return f"{seconds:.2g} s"
    seconds = round(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    if seconds >= 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds} s"


class SearchProgress:
    """The display of one search, fed by its workers' events (in this process or via a queue).

    `hints` are the flags that would shorten this search, shown when it is estimated at over an
    hour, e.g. {"--device cuda": "train on a GPU"}.
    """

    def __init__(
        self,
        trials: int,
        epochs: int,
        jobs: int = 1,
        hints: dict[str, str] | None = None,
        out: TextIO | None = None,
        live: bool | None = None,
    ) -> None:
        self.trials, self.epochs, self.jobs = trials, epochs, jobs
        self.hints = hints or {}
        self.out = out or sys.stdout
        self.live = self.out.isatty() if live is None else live
        self.lock = threading.Lock()  # events come from the main thread or a queue's reader
        self.finished = 0  # the study's finished trials, counting those of earlier runs
        self.best: float | None = None
        self.running: dict[int, list[float]] = {}  # trial number -> start, then each epoch's end
        self.estimated = False
        self.per_trial: float | None = None  # the estimate's seconds per trial, once made
        self.trial_bar: tqdm | None = None
        self.epoch_bar: tqdm | None = None
        self._ticker: threading.Thread | None = None
        self._closed = threading.Event()
        # Trials a stop signal failed in this display's workers: number -> whether a baseline.
        self.stopped: dict[int, bool] = {}

    def start(self, finished: int, best: float | None) -> None:
        """Open the display on a study that already holds `finished` trials."""
        self.finished, self.best = finished, best
        if not self.live:
            return
        self.trial_bar = tqdm(
            total=self.trials,
            initial=min(finished, self.trials),
            desc="trials",
            unit="trial",
            file=self.out,
            dynamic_ncols=True,
            # No {remaining}: tqdm's, from the rate since the start (imports included), said
            # 32 s where the estimate line said at most 8.8 s; the postfix shows the estimate's.
            bar_format="{desc} {n_fmt}/{total_fmt} |{bar}| {elapsed}{postfix}",
        )
        self.epoch_bar = tqdm(
            total=self.epochs,
            desc="epochs",
            file=self.out,
            dynamic_ncols=True,
            leave=False,
            bar_format="{desc} {n_fmt}/{total_fmt} |{bar}| {elapsed}",
        )
        self._show_best()
        # tqdm redraws only on an update; a CIFAR-10 epoch on a CPU can take a minute, and a
        # clock that stands still for that long looks hung.
        self._ticker = threading.Thread(target=self._tick, daemon=True)
        self._ticker.start()

    def trial_started(self, number: int, at: float) -> None:
        with self.lock:
            self.running[number] = [at]
            self._show_epochs()

    def epoch_done(self, number: int, epoch: int, val_loss: float, at: float) -> None:
        with self.lock:
            times = self.running.setdefault(number, [at])
            seconds = at - times[-1]
            times.append(at)
            if self.live:
                self._show_epochs()
            elif seconds > SLOW_EPOCH_SECONDS:
                self._line(
                    f"trial {number:3d} epoch {epoch}/{self.epochs} val_loss={val_loss:.4f} "
                    f"({seconds:.1f}s)"
                )

    def trial_finished(self, line: TrialLine) -> None:
        with self.lock:
            times = self.running.pop(line.number, None)
            self.finished += 1
            value = line.value if line.state == TrialState.COMPLETE.name else None
            if (
                value is not None
                and math.isfinite(value)
                and (self.best is None or value < self.best)
            ):
                self.best = value
            self._line(line.text())
            if self.trial_bar is not None:
                self.trial_bar.update(1)
                self._show_best()
            self._show_epochs()
            if not self.estimated and times and len(times) > 1:
                self.estimated = True
                self._estimate(times, line.seconds)

    def study_finished(self, finished: int) -> None:
        """The study's finished trials as the database says, other workers' included: a worker
        started by hand beside others counted only its own, and its bar froze there."""
        with self.lock:
            if finished <= self.finished:
                return
            if self.trial_bar is not None:
                self.trial_bar.update(min(finished, self.trials) - min(self.finished, self.trials))
            self.finished = finished
            self._show_best()

    def trial_dropped(self, number: int, text: str) -> None:
        """A trial of this display's workers that something else ended, said in `text`."""
        with self.lock:
            self.running.pop(number, None)
            self.finished += 1
            self._line(text)
            if self.trial_bar is not None:
                self.trial_bar.update(1)
            self._show_epochs()

    def note(self, text: str) -> None:
        """One line above the bars: what the workers wait for, what they found."""
        with self.lock:
            self._line(text)

    def trial_stopped(self, number: int, baseline: bool) -> None:
        """A trial of this display's workers that a stop signal failed; said after the bars
        close, once for every worker."""
        with self.lock:
            self.stopped[number] = baseline

    def close(self) -> None:
        self._closed.set()
        with self.lock:
            for bar in (self.epoch_bar, self.trial_bar):
                if bar is not None:
                    bar.close()
            self.epoch_bar = self.trial_bar = None

    def _estimate(self, times: list[float], seconds: float) -> None:
        """One line: the rest of the search if every trial trained all its epochs.

        `times` are the first trial's start and epoch ends. Its first epoch also pays the
        process's one-off costs (imports, the first optimizer), so the median epoch stands for
        an epoch; what the trial spent outside its epochs (testing, storage) is added once.
        """
        left = self.trials - self.finished
        if left <= 0:
            return
        epochs = [end - start for start, end in itertools.pairwise(times)]
        epoch = statistics.median(epochs)
        per_trial = epoch * self.epochs + max(0.0, seconds - (times[-1] - times[0]))
        self.per_trial = per_trial
        self._show_best()
        total = left * per_trial / self.jobs
        text = (
            f"estimate: {left} more trial{'s' if left > 1 else ''}, each at most "
            f"{format_duration(per_trial)} "
            f"({self.epochs} epochs of {epoch:.2g} s): at most {format_duration(total)} on this "
            "machine, less as trials are pruned or stop early"
        )
        if total > LONG_SEARCH_SECONDS and self.hints:
            text += "; to shorten it: " + ", ".join(f"{k} ({v})" for k, v in self.hints.items())
        self._line(text)

    def _line(self, text: str) -> None:
        if self.live:
            tqdm.write(text, file=self.out)
        else:
            print(text, file=self.out, flush=True)

    def _show_best(self) -> None:
        if self.trial_bar is not None:
            best = "-" if self.best is None else f"{self.best:.4f}"
            text = f"best val_loss {best}"
            left = self.trials - self.finished
            if self.per_trial is not None and left > 0:
                text += f", at most {format_duration(left * self.per_trial / self.jobs)} left"
            self.trial_bar.set_postfix_str(text, refresh=True)

    def _show_epochs(self) -> None:
        bar = self.epoch_bar
        if bar is None:
            return
        numbers = sorted(self.running)
        if not numbers:
            bar.set_description_str("epochs", refresh=False)
            bar.reset(total=self.epochs)
            return
        label = "trial" if len(numbers) == 1 else "trials"
        bar.set_description_str(f"{label} {', '.join(map(str, numbers))}: epochs", refresh=False)
        bar.total = self.epochs * len(numbers)
        bar.n = sum(len(self.running[n]) - 1 for n in numbers)
        bar.refresh()

    def _tick(self) -> None:
        while not self._closed.wait(1.0):
            with self.lock:
                for bar in (self.trial_bar, self.epoch_bar):
                    if bar is not None:
                        bar.refresh()


class QueueProgress:
    """A --jobs worker's side of the display: its events, sent to the parent's queue."""

    def __init__(self, queue, space: SearchSpace) -> None:
        self.queue, self.space = queue, space

    def trial_started(self, number: int, at: float) -> None:
        self.queue.put(("trial_started", number, at))

    def epoch_done(self, number: int, epoch: int, val_loss: float, at: float) -> None:
        self.queue.put(("epoch_done", number, epoch, val_loss, at))

    def trial_finished(self, line: TrialLine) -> None:
        self.queue.put(("trial_finished", line))

    def study_finished(self, finished: int) -> None:
        """Not sent: the parent hears of every --jobs worker's trial already, and a count read
        between another worker's trial and its event would count that trial twice."""

    def trial_dropped(self, number: int, text: str) -> None:
        self.queue.put(("trial_dropped", number, text))

    def note(self, text: str) -> None:
        self.queue.put(("note", text))

    def trial_stopped(self, number: int, baseline: bool) -> None:
        self.queue.put(("trial_stopped", number, baseline))


def forward_events(queue, progress: SearchProgress) -> threading.Thread:
    """Feed `progress` from the workers' queue in a thread; put None on the queue to stop it."""

    def forward() -> None:
        while (event := queue.get()) is not None:
            getattr(progress, event[0])(*event[1:])

    thread = threading.Thread(target=forward, daemon=True)
    thread.start()
    return thread


def shortening_hints(task_name: str, device: str, jobs: int, train_size: int) -> dict[str, str]:
    """The flags that would shorten a search run with these settings."""
    hints = {}
    if device == "cpu":
        hints["--device cuda"] = "train on a GPU"
    cores = os.cpu_count() or 1
    if jobs < cores:
        hints[f"--jobs {cores}"] = "one worker process per CPU core"
    if task_name == "cifar" and train_size > 10_000:
        hints["--train-size 10000"] = "fewer training images"
    return hints
