"""Pruning that predicts where a trial ends, and what the sampler is shown of pruned trials.

On CIFAR-10 the strongly regularized winners start slowly: after an epoch or two their
validation loss sits at the median of all trials, and it keeps falling to the last epoch. A rule
on the current value (the median pruner) stops exactly them, and TPE, which ranks every pruned
trial below every completed one, then learns to avoid strong regularization. Two remedies,
after Domhan et al. (IJCAI 2015) and Baker et al. (2018), who stop a run only when its
*predicted final* result is bad, and optuna PR #5266, which suggests giving TPE an estimate of
a pruned trial's final value instead of its last one:

- `CurvePredictor` predicts a trial's final best validation loss from its best value so far and
  its hyperparameters, by what happened after the same epoch to the completed trials nearest to
  it (a kernel average of their log improvement), with a conformal bound from leave-one-out
  residuals;
- `PredictivePruner` prunes a trial only when even that optimistic bound is worse than the
  `top`-th best completed trial;
- `SamplerView` wraps a sampler and shows it pruned trials at their predicted final value (or
  hides them), and can hide the enqueued baselines.
"""

import copy
import heapq
import math
from collections.abc import Callable, Sequence

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from search.attrs import BASELINE_ATTR

BANDWIDTHS = (0.15, 0.3, 0.6, 1.2)  # kernel widths tried, in units of a parameter's range
PRUNED_VIEWS = ("ranked-last", "predicted", "hidden")  # --pruned-as
BASELINE_VIEWS = ("seen", "hidden")
HISTORY = 500  # --sampler-history: finished trials a model-based sampler learns from
HISTORY_BEST = 25  # of them, the best complete ones, kept whatever their age


def best_so_far(trial: FrozenTrial, step: int) -> float | None:
    """The lowest validation loss a trial reported up to `step`; the final value after it."""
    if trial.state == TrialState.COMPLETE and step >= max(trial.intermediate_values, default=0):
        return trial.value  # it stopped early: nothing changes after its last epoch
    values = [v for s, v in trial.intermediate_values.items() if s <= step and math.isfinite(v)]
    return min(values, default=None)


def param_features(params: dict, distributions: dict[str, BaseDistribution]) -> np.ndarray:
    """Params scaled to [0, 1] per numeric parameter (log where searched on a log scale), and
    one-hot categories at distance 1 from each other."""
    parts: list[float] = []
    for name in sorted(distributions):
        dist = distributions[name]
        if isinstance(dist, CategoricalDistribution):
            parts.extend(math.sqrt(0.5) * float(params[name] == c) for c in dist.choices)
            continue
        low, high, value = dist.low, dist.high, params[name]
        if dist.log:
            low, high, value = math.log(low), math.log(high), math.log(value)
        parts.append((value - low) / (high - low) if high > low else 0.0)
    return np.asarray(parts)


class CurvePredictor:
    """Final best validation loss from a partial curve, fitted on the completed trials.

    At epoch t, a completed trial c went from its best-so-far b_c(t) to its final f_c; the
    prediction for a running trial at b(t) is b(t) * exp(weighted mean of log(f_c / b_c(t))),
    weighted by a Gaussian kernel over the hyperparameters and the level log b(t) (a trial
    stuck at chance does not improve like one at half its loss). The kernel width is chosen by
    leave-one-out error, and the leave-one-out residuals give a conformal bound: the final
    value lies above `bound` with probability about 1 - alpha.
    """

    def __init__(self, completed: Sequence[FrozenTrial], alpha: float = 0.1) -> None:
        self.alpha = alpha
        self.completed = [t for t in completed if t.value is not None and t.intermediate_values]
        self.distributions = self.completed[0].distributions if self.completed else {}
        self._x = np.array([self._encode(t.params) for t in self.completed] or np.zeros((0, 0)))
        self._log_final = np.log([t.value for t in self.completed])
        self._fits: dict[int, tuple[np.ndarray, np.ndarray, float, np.ndarray]] = {}

    def _encode(self, params: dict) -> np.ndarray:
        return param_features(params, self.distributions)

    def _fit(self, step: int):
        """For `step`: the completed trials' log best-so-far, log improvement, the chosen
        kernel width and the sorted leave-one-out residuals."""
        if step not in self._fits:
            log_b = np.log([best_so_far(t, step) for t in self.completed])
            gain = self._log_final - log_b
            best = None
            for width in BANDWIDTHS:
                weights = self._kernel(self._x, log_b, self._x, log_b, width)
                np.fill_diagonal(weights, 0.0)
                predicted = log_b + _weighted_mean(weights, gain)
                residuals = np.sort(self._log_final - predicted)
                error = float(np.mean(residuals**2))
                if best is None or error < best[0]:
                    best = (error, width, residuals)
            self._fits[step] = (log_b, gain, best[1], best[2])
        return self._fits[step]

    def _kernel(self, xa, log_ba, xb, log_bb, width: float) -> np.ndarray:
        spread = max(float(np.ptp(self._log_final)), 1e-3)
        distance = ((xa[:, None, :] - xb[None, :, :]) ** 2).sum(-1)
        distance += ((log_ba[:, None] - log_bb[None, :]) / spread) ** 2
        return np.exp(-distance / (2 * width**2))

    def predict(self, params: dict, best_value: float, step: int) -> tuple[float, float]:
        """(predicted final, optimistic bound); the bound is -inf with too few trials."""
        log_b, gain, width, residuals = self._fit(step)
        x = self._encode(params)[None, :]
        weights = self._kernel(x, np.log([best_value]), self._x, log_b, width)
        log_predicted = math.log(best_value) + float(_weighted_mean(weights, gain)[0])
        # Conformal: the k-th smallest of n residuals bounds a new one at level k / (n + 1).
        k = math.floor(self.alpha * (len(residuals) + 1))
        bound = log_predicted + residuals[k - 1] if k >= 1 else -math.inf
        # A trial cannot end above its best so far.
        return min(math.exp(log_predicted), best_value), min(math.exp(bound), best_value)


def _weighted_mean(weights: np.ndarray, values: np.ndarray) -> np.ndarray:
    total = weights.sum(axis=1)
    mean = weights @ values / np.where(total > 0, total, 1.0)
    return np.where(total > 1e-12, mean, float(np.mean(values)) if len(values) else 0.0)


class _CompletedCache:
    """A predictor refitted only when the set of completed trials changes."""

    def __init__(self, alpha: float) -> None:
        self.alpha = alpha
        self._key: tuple[int, ...] = ()
        self._predictor: CurvePredictor | None = None

    def get(self, trials: list[FrozenTrial]) -> CurvePredictor:
        completed = [t for t in trials if t.state == TrialState.COMPLETE]
        key = tuple(t.number for t in completed)
        if self._predictor is None or key != self._key:
            self._key, self._predictor = key, CurvePredictor(completed, self.alpha)
        return self._predictor


class PredictivePruner(optuna.pruners.BasePruner):
    """Prune a trial only if its optimistic predicted final loss misses the best `top` trials.

    `quantile`, if given, replaces the best `top` by that quantile of the completed trials'
    final losses (0.5: a median rule on predicted final losses instead of current ones).
    `unpruned_every`: every n-th trial (by number) is never pruned, so that the predictor keeps
    seeing whole curves from all over the space, as Hyperband keeps an unpruned bracket; 0 for
    none. With fewer than `min_completed` completed trials nothing is pruned.
    """

    def __init__(
        self,
        n_warmup_steps: int = 1,
        top: int = 3,
        alpha: float = 0.3,
        min_completed: int = 10,
        unpruned_every: int = 0,
        quantile: float | None = None,
    ) -> None:
        self.n_warmup_steps = n_warmup_steps
        self.top = top
        self.quantile = quantile
        self.min_completed = min_completed
        self.unpruned_every = unpruned_every
        self._cache = _CompletedCache(alpha)

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        if step is None or step < self.n_warmup_steps:
            return False
        if self.unpruned_every and trial.number % self.unpruned_every == 0:
            return False
        predictor = self._cache.get(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        if len(predictor.completed) < self.min_completed:
            return False
        current = best_so_far(trial, step)
        if current is None:
            return False  # a NaN curve fails by itself
        finals = sorted(t.value for t in predictor.completed)
        if self.quantile is None:
            threshold = finals[min(self.top, len(finals)) - 1]
        else:
            threshold = float(np.quantile(finals, self.quantile))
        _, bound = predictor.predict(trial.params, current, step)
        return bound > threshold


def recent_history(trials: list[FrozenTrial], limit: int) -> list[FrozenTrial]:
    """At most `limit` finished trials: the best complete ones, then the most recent others.

    TPE and GP read their whole history on every sample, so their cost grows with the study
    (TPE: 11 ms at 100 trials, 67 ms at 5,000 on the AMD machine; docs/workers.md). Past
    `limit`, the best `HISTORY_BEST` stay, so TPE's good set (never more than 25 trials with
    Optuna's default gamma) is exactly what it would be; the rest of its density comes from the
    most recent trials. Unfinished trials are always kept.
    """
    finished = [t for t in trials if t.state.is_finished()]
    if len(finished) <= limit:
        return trials
    complete = [t for t in finished if t.state == TrialState.COMPLETE and t.value is not None]
    kept = {t.number for t in heapq.nsmallest(HISTORY_BEST, complete, key=lambda t: t.value)}
    for trial in reversed(finished):
        if len(kept) >= limit:
            break
        kept.add(trial.number)
    return [t for t in trials if not t.state.is_finished() or t.number in kept]


class _History:
    """`recent_history` of one study, kept up to date between trials instead of recomputed.

    Each trial TPE reads the whole study several times; at 5,000 trials each `recent_history`
    pass over it costs milliseconds, and that is what made the start of a trial grow with the
    study. A study's trials come sorted by number, numbered from 0, and a finished trial never
    changes: only the trials new since the last read and those that were unfinished then need
    a look, and the selection is built from numbers. A list of any other shape (filtered,
    several studies) gets the plain `recent_history`.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._seen = 0  # trials 0 .. _seen - 1 have been looked at
        self._unfinished: set[int] = set()
        self._best: list[tuple[float, int]] = []  # (value, number) of the best complete

    def select(self, trials: list[FrozenTrial]) -> list[FrozenTrial]:
        count = len(trials)
        if not trials or trials[0].number != 0 or trials[-1].number != count - 1:
            return recent_history(trials, self.limit)
        if count < self._seen:  # not the study seen before: start over
            self._seen, self._unfinished, self._best = 0, set(), []
        for number in sorted(self._unfinished) + list(range(self._seen, count)):
            trial = trials[number]
            if not trial.state.is_finished():
                self._unfinished.add(number)
                continue
            self._unfinished.discard(number)
            if trial.state == TrialState.COMPLETE and trial.value is not None:
                self._best = heapq.nsmallest(HISTORY_BEST, [*self._best, (trial.value, number)])
        self._seen = count
        if count - len(self._unfinished) <= self.limit:
            return trials
        kept = {number for _, number in self._best}
        number = count - 1
        while len(kept) < self.limit:
            if number not in self._unfinished:
                kept.add(number)
            number -= 1
        return [trials[number] for number in sorted(kept | self._unfinished)]


class _StudyView:
    """The study as a sampler sees it: the same object, its trial lists transformed."""

    def __init__(self, study: optuna.Study, transform: Callable[[list[FrozenTrial]], list]):
        self._study = study
        self._transform = transform

    def __getattr__(self, name: str):
        return getattr(self._study, name)

    def _get_trials(self, deepcopy=True, states=None, use_cache=False) -> list[FrozenTrial]:
        # Always the list Optuna caches for the trial being sampled (it reads the storage once,
        # after `ask`): each fresh read sorts every trial of the study, 2-3 ms at 5,000 trials,
        # and TPE with the constant liar would otherwise read twice more within milliseconds.
        trials = self._transform(self._study._get_trials(deepcopy=False, use_cache=True))
        return [t for t in trials if states is None or t.state in states]

    def get_trials(self, deepcopy=True, states=None) -> list[FrozenTrial]:
        return self._get_trials(deepcopy, states)

    @property
    def trials(self) -> list[FrozenTrial]:
        return self._get_trials()


class SamplerView(optuna.samplers.BaseSampler):
    """Wrap a sampler and change what it learns from pruned trials and from the baselines.

    pruned="ranked-last" shows pruned trials as they are: Optuna's TPE ranks every one of them
    below every completed trial. "predicted": a pruned trial is shown as completed at its
    predicted final value (CurvePredictor over the study's completed trials); "hidden": pruned
    trials are not shown at all. baselines="hidden": the enqueued baselines (user attr
    `baseline`) are not shown, so that in a short search the best of them does not anchor the
    sampler's good set. history=N: the sampler learns from at most N finished trials
    (`recent_history`: the best complete ones by their own value, then the most recent), chosen
    before the views above. The study itself, its best trial and the pruner see every trial as
    it is.
    """

    def __init__(
        self,
        sampler: optuna.samplers.BaseSampler,
        pruned: str = "ranked-last",
        baselines: str = "seen",
        history: int | None = None,
    ) -> None:
        if pruned not in PRUNED_VIEWS or baselines not in BASELINE_VIEWS:
            raise ValueError(f"pruned must be one of {PRUNED_VIEWS}, baselines {BASELINE_VIEWS}")
        self.sampler, self.pruned, self.baselines = sampler, pruned, baselines
        self.history = history
        self._cache = _CompletedCache(alpha=0.1)
        self._histories: dict[tuple[int, int], _History] = {}  # by (storage, study)
        self._last: tuple[list, list] | None = None  # (a trial list, what it was shown as)

    def _view(self, study: optuna.Study) -> _StudyView:
        history = None
        if self.history is not None:
            key = (id(study._storage), study._study_id)
            history = self._histories.setdefault(key, _History(self.history))
        return _StudyView(study, lambda trials: self._shown(trials, history))

    def _shown(self, trials: list[FrozenTrial], history: _History | None) -> list[FrozenTrial]:
        # Within one trial Optuna hands every read of the sampler the same cached list: transform
        # it once (at 5,000 trials each pass over them costs milliseconds).
        if self._last is None or self._last[0] is not trials:
            # The cap first: the predictor and the filters then read at most N finished trials.
            capped = trials if history is None else history.select(trials)
            self._last = (trials, self._transform(capped))
        return self._last[1]

    def _transform(self, trials: list[FrozenTrial]) -> list[FrozenTrial]:
        # The predictor learns from the trials the sampler was about to read anyway (every
        # completed one, baselines included): no second read of the storage per sample.
        predictor = None
        if self.pruned == "predicted" and any(t.state == TrialState.PRUNED for t in trials):
            predictor = self._cache.get(trials)
        if self.baselines == "hidden":
            trials = [t for t in trials if BASELINE_ATTR not in t.user_attrs]
        if self.pruned == "hidden":
            trials = [t for t in trials if t.state != TrialState.PRUNED]
        elif predictor is not None:
            trials = [self._as_predicted(t, predictor) for t in trials]
        return trials

    @staticmethod
    def _as_predicted(trial: FrozenTrial, predictor: CurvePredictor) -> FrozenTrial:
        step = trial.last_step
        current = None if step is None else best_so_far(trial, step)
        if trial.state != TrialState.PRUNED or current is None or not predictor.completed:
            return trial
        shown = copy.copy(trial)
        shown.state = TrialState.COMPLETE
        shown.value = predictor.predict(trial.params, current, step)[0]
        return shown

    def infer_relative_search_space(self, study, trial):
        return self.sampler.infer_relative_search_space(self._view(study), trial)

    def sample_relative(self, study, trial, search_space):
        return self.sampler.sample_relative(self._view(study), trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self.sampler.sample_independent(
            self._view(study), trial, param_name, param_distribution
        )

    def before_trial(self, study, trial) -> None:
        self.sampler.before_trial(study, trial)

    def after_trial(self, study, trial, state, values) -> None:
        self.sampler.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.sampler.reseed_rng()
