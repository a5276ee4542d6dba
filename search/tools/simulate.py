"""Simulated searches over a curve bank: `python -m search.tools.simulate`.

`search.tools.replay` feeds recorded curves to a pruner, but the sampler there cannot react: in a
real pruned search TPE learns from the pruned trials and proposes other configurations. Here a
real Optuna sampler and pruner run a whole search in memory against a surrogate of the bank
(search/tools/bank.py), so a strategy (sampler, pruner, warm-up, what the sampler sees) can be
compared over many study seeds in minutes.

The surrogate is a kernel-weighted average of the recorded runs (inputs: dropout, log weight
decay, log L1, activation; outputs: every epoch's log validation loss and test accuracy), its
kernel widths chosen by leave-one-out error. A simulated trial gets the surrogate's curves plus
the seed noise of one of the bank's repeated configurations, then early stopping by its
patience, then the objective's reporting and pruning (search/objective.py). Its result is
judged by the surrogate's noise-free test accuracy of the configuration a search would
recommend: what re-training the best trial over many seeds would measure.
"""

import argparse
import heapq
import itertools
import math
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import optuna
from optuna.trial import TrialState

from search.attrs import BASELINE_ATTR, START_DESIGN_ATTR
from search.errors import UsageError
from search.flags import ArgumentParser, positive_int
from search.objective import asks_pruner, starts_the_study, stuck_at_chance
from search.pruning import PredictivePruner, param_features
from search.report import summary
from search.space import ACTIVATION, DROPOUT, PATIENCE, SearchSpace
from search.study import make_pruner, make_sampler
from search.tasks.cifar import baselines, search_space
from search.tools.bank import DEFAULT_BANK, REPEATED, measured_every_epoch, planned_runs, read_bank

PROG = "python -m search.tools.simulate"
EPOCHS = 8  # the bank's (search/tools/protocols.py)
REPORT_SEEDS = 3  # search.report's --repeats
SURROGATES = ("kernel", "nearest")
REFERENCE = "reference (dropout 0.25)"  # the baseline a search's answer is measured against
CIFAR10_CHANCE_LOSS = math.log(10)  # cross-entropy of a uniform guess over 10 classes
FIXED_L1_HIGH = 1e-3  # the CIFAR-10 L1 range's end before it came from training.l1_ceiling


class Surrogate:
    """Noise-free curves of any configuration, and seed noise to add, fitted on a bank.

    The curves of a configuration are a kernel-weighted average of the recorded ones
    (Nadaraya-Watson), with kernel widths per parameter chosen by leave-one-out error. An
    average never leaves the range of what was recorded: a Gaussian-process mean, tried first,
    overshot between recorded runs, and TPE, optimizing against it, found 80% test accuracy
    where no run had reached 67%. An average flattens the peaks instead, so kind="nearest"
    (the nearest recorded configuration) is there to check that a verdict holds under both.
    """

    def __init__(
        self,
        records: list[dict],
        space: SearchSpace,
        kind: str = "kernel",
        imported: bool = True,
    ) -> None:
        runs = [r for r in records if _complete(r)]
        if imported:
            runs += _imputed(runs, [r for r in records if _imported_whole(r)])
        if len(runs) < 8:
            raise UsageError(f"the bank holds {len(runs)} complete runs; record at least 8")
        self.space = space
        self.distributions = {
            k: v for k, v in space.distributions().items() if k != PATIENCE
        }  # the bank's runs train every epoch; patience is applied to their curves
        self.x = np.array([self._encode(r["params"]) for r in runs])
        self.y = _targets(runs)
        self.widths = self._choose_widths()
        if kind == "nearest":
            # The curves of the nearest recorded configuration (its repeats averaged), in the
            # kernel's scaling of the parameters: a tabular benchmark, exact where recorded.
            self.widths = self.widths / 100
        self.loo_error = self._loo_error(self.widths)
        self.noise_curves = _seed_noise(records)
        self.runs = len(runs)

    def _encode(self, params: dict) -> np.ndarray:
        return param_features(params, self.distributions)

    def _distance(self, a: np.ndarray, widths: np.ndarray) -> np.ndarray:
        """Squared distance of each row of `a` to each recorded run, in kernel widths."""
        return (((a[:, None, :] - self.x[None, :, :]) / widths) ** 2).sum(-1)

    def _average(self, distance: np.ndarray) -> np.ndarray:
        """The recorded curves averaged with Gaussian weights of `distance` (one row each);
        weights relative to the nearest run, so that narrow kernels do not underflow."""
        weights = np.exp(-0.5 * (distance - distance.min(axis=1, keepdims=True)))
        return weights @ self.y / weights.sum(axis=1, keepdims=True)

    def _loo_error(self, widths: np.ndarray) -> float:
        """Mean squared error of each run's curves predicted from the others (standardized)."""
        distance = self._distance(self.x, widths)
        np.fill_diagonal(distance, np.inf)  # leave each run out of its own prediction
        predicted = self._average(distance)
        return float(np.mean(((predicted - self.y) / (self.y.std(axis=0) + 1e-9)) ** 2))

    def _choose_widths(self) -> np.ndarray:
        """Kernel widths per parameter by leave-one-out error."""
        groups = self._feature_groups()
        candidates = [
            np.array([numeric[g] if g < 3 else categorical for g in groups])
            for numeric in itertools.product((0.05, 0.1, 0.2, 0.4, 0.8), repeat=3)
            for categorical in (0.3, 1.0, 3.0)
        ]
        return min(candidates, key=self._loo_error)

    def _feature_groups(self) -> list[int]:
        """Per feature column: 0 dropout, 1 weight decay, 2 L1, 3 the activation's one-hot."""
        order = {"dropout": 0, "weight_decay": 1, "l1": 2}
        groups = []
        for name in sorted(self.distributions):
            if name == ACTIVATION:
                groups.extend([3] * len(self.space.activations))
            else:
                groups.append(order[name])
        return groups

    def curves(self, params: dict) -> tuple[np.ndarray, np.ndarray]:
        """Noise-free (validation loss, test accuracy) per epoch for `params`."""
        y = self._average(self._distance(self._encode(params)[None, :], self.widths))[0]
        return np.exp(y[:EPOCHS]), y[EPOCHS:]

    def noisy_curves(self, params: dict, rng: np.random.Generator):
        """The curves of one training run: noise-free curves plus one seed's deviation."""
        val, test = self.curves(params)
        noise = self.noise_curves[rng.integers(len(self.noise_curves))]
        return val * np.exp(noise[:EPOCHS]), np.clip(test + noise[EPOCHS:], 0.0, 1.0)


def _complete(record: dict) -> bool:
    """A recorded run that trained every epoch."""
    trained_all = not record["diverged"] and len(record["val_loss"]) == EPOCHS
    return trained_all and measured_every_epoch(record)


def _imported_whole(record: dict) -> bool:
    """An imported search trial that trained every epoch (its patience never stopped it)."""
    return (
        not measured_every_epoch(record)
        and len(record["val_loss"]) == EPOCHS
        and record.get("test_accuracy_at_best") is not None
    )


def _imputed(recorded: list[dict], imported: list[dict]) -> list[dict]:
    """Imported trials with a test accuracy for every epoch, imputed from their validation loss.

    A search measures the test set at the best epoch only. Across the recorded runs the test
    accuracy of an epoch follows its log validation loss closely (a line fitted to every epoch
    of every run that learned leaves a residual std of 3.5 points); the line, shifted to pass
    through the trial's measured accuracy at its best epoch, gives the others. The imported
    trials are what TPE proposed around the winners, where the recorded Sobol design is thin.
    """
    if not imported:
        return []
    log_val = np.log(np.concatenate([r["val_loss"] for r in recorded]))
    test = np.concatenate([r["test_accuracy"] for r in recorded])
    learned = log_val < math.log(2.2)  # runs stuck at chance (ln 10 = 2.303) follow no line
    slope, intercept = np.polyfit(log_val[learned], test[learned], 1)
    runs = []
    for record in imported:
        log_curve = np.log(record["val_loss"])
        best = int(np.argmin(log_curve))
        shift = record["test_accuracy_at_best"] - (slope * log_curve[best] + intercept)
        curve = np.clip(slope * log_curve + intercept + shift, 0.0, 1.0)
        runs.append({**record, "test_accuracy": curve.tolist()})
    return runs


def _targets(runs: list[dict]) -> np.ndarray:
    """Per run: the log validation loss of every epoch, then the test accuracy of every one."""
    val = np.log(np.array([r["val_loss"] for r in runs]))
    return np.hstack([val, np.array([r["test_accuracy"] for r in runs])])


def _seed_noise(records: list[dict]) -> np.ndarray:
    """Deviation curves (log val loss, test accuracy) of repeated runs from their group mean,
    scaled by sqrt(n / (n - 1)) so that they have the spread of a single run."""
    groups: dict[str, list[dict]] = {}
    for record in records:
        name = record["run"].rpartition("-")[0]
        if name in REPEATED and _complete(record):
            groups.setdefault(name, []).append(record)
    deviations = []
    for runs in groups.values():
        if len(runs) < 2:
            continue
        y = _targets(runs)
        deviations.extend((y - y.mean(axis=0)) * math.sqrt(len(runs) / (len(runs) - 1)))
    return np.array(deviations) if deviations else np.zeros((1, 2 * EPOCHS))


def early_stopped(val: np.ndarray, patience: int | None) -> int:
    """Epochs a run trains with early stopping (as search/training.py's loop stops)."""
    best, without = math.inf, 0
    for epoch, value in enumerate(val, start=1):
        if value < best:
            best, without = value, 0
        else:
            without += 1
        if patience is not None and without >= patience:
            return epoch
    return len(val)


@dataclass(frozen=True)
class Strategy:
    """How a search runs: sampler, pruner, what the sampler is shown, where baselines go."""

    name: str
    pruner: str = "median"
    warmup_epochs: int = EPOCHS // 2
    sampler: str = "tpe"  # or "gp", which learns from completed trials only
    pruned_as: str = "ranked-last"
    baselines: str = "first"  # "first" (as search.cifar), "hidden" from the sampler, "last"
    startup_trials: int = 10
    sobol_start: int = 0  # trials enqueued from a Sobol design before the sampler's own
    l1_high: float | None = None  # another end of the L1 range than the task's
    design: int = 0  # Latin hypercube trials enqueued after the baselines (SearchSpace)
    chance_stop: bool = False  # stop a trial at chance after its first epoch
    unpruned_every: int = 0
    top: int = 3
    alpha: float = 0.1
    quantile: float | None = None

    def make_sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        return make_sampler(
            self.sampler,
            seed,
            self.pruned_as,
            self.startup_trials,
            hide_baselines=self.baselines == "hidden",
        )

    def make_pruner(self) -> optuna.pruners.BasePruner:
        if self.pruner == "predictive":
            return PredictivePruner(
                self.warmup_epochs,
                self.top,
                self.alpha,
                unpruned_every=self.unpruned_every,
                quantile=self.quantile,
            )
        return make_pruner(self.pruner, EPOCHS, self.warmup_epochs)

    def space(self, space: SearchSpace) -> SearchSpace:
        return space if self.l1_high is None else replace(space, l1=(space.l1[0], self.l1_high))


def _strategies(*strategies: Strategy) -> dict[str, Strategy]:
    return {s.name: s for s in strategies}


STRATEGIES = _strategies(
    # References: no pruning, the current default, and pruning from the first epoch.
    Strategy("none", pruner="none", l1_high=FIXED_L1_HIGH),
    Strategy("median-4", warmup_epochs=4),
    Strategy("median-2", warmup_epochs=2),
    Strategy("median-1", warmup_epochs=1),
    Strategy("hyperband-2", pruner="hyperband", warmup_epochs=2),
    Strategy("hyperband-1", pruner="hyperband", warmup_epochs=1, l1_high=FIXED_L1_HIGH),
    # What the sampler is shown of pruned trials.
    Strategy("median-1-hidden", warmup_epochs=1, pruned_as="hidden"),
    Strategy("median-1-predicted", warmup_epochs=1, pruned_as="predicted"),
    Strategy("median-1-gp", warmup_epochs=1, sampler="gp"),
    Strategy("hyperband-1-hidden", pruner="hyperband", warmup_epochs=1, pruned_as="hidden"),
    Strategy("hyperband-1-predicted", pruner="hyperband", warmup_epochs=1, pruned_as="predicted"),
    # The predictive pruner, alone and with the sampler shown its predictions.
    Strategy("predictive-1", pruner="predictive", warmup_epochs=1),
    Strategy("predictive-1-predicted", "predictive", 1, pruned_as="predicted"),
    Strategy("predictive-2-predicted", "predictive", 2, pruned_as="predicted"),
    Strategy("predictive-1-predicted-top1", "predictive", 1, pruned_as="predicted", top=1),
    Strategy("predictive-1-predicted-a3", "predictive", 1, pruned_as="predicted", alpha=0.3),
    Strategy("predictive-1-predicted-a5", "predictive", 1, pruned_as="predicted", alpha=0.5),
    Strategy("predictive-1-hidden-a3", "predictive", 1, pruned_as="hidden", alpha=0.3),
    # A median rule on predicted final losses: as aggressive as median-1, without its bias.
    Strategy("predictive-1-predicted-q50", "predictive", 1, pruned_as="predicted", quantile=0.5),
    Strategy("predictive-1-predicted-q25", "predictive", 1, pruned_as="predicted", quantile=0.25),
    Strategy("predictive-1-predicted-u4", "predictive", 1, pruned_as="predicted", unpruned_every=4),
    # Where the baselines go, and how the sampler starts (unpruned, to see them alone).
    Strategy("none-baselines-hidden", pruner="none", baselines="hidden"),
    Strategy("none-baselines-last", pruner="none", baselines="last"),
    Strategy("none-startup-5", pruner="none", startup_trials=5),
    Strategy("none-sobol-start", pruner="none", sobol_start=10),
    Strategy("none-l1-1e-4", pruner="none", l1_high=1e-4),
    # Issue 23: the start, dead regions and the first rung, alone and together.
    *(
        Strategy(
            f"{pruner}{warmup}{'-l1' * l1}{'-chance' * chance}{f'-start{design}' * bool(design)}"
            f"{'-hidden' * hidden}",
            pruner=pruner,
            warmup_epochs=warmup,
            l1_high=None if l1 else FIXED_L1_HIGH,
            chance_stop=chance,
            design=design,
            startup_trials=design or 10,
            baselines="hidden" if hidden else "first",
        )
        for pruner, warmup in (
            ("none", 1),
            ("hyperband", 1),
            ("hyperband", 2),
            ("median", 2),
            ("median", 4),
        )
        for l1, chance, design, hidden in (
            (True, False, 0, False),
            (True, True, 0, False),
            (True, True, 6, False),
            (True, True, 12, False),
            (True, True, 6, True),
            (False, False, 6, False),
        )
    ),
)


@dataclass
class Outcome:
    """One simulated search."""

    strategy: str
    seed: int
    epochs: int
    pruned: int
    best_params: dict
    best_test: float  # noise-free test accuracy of the recommended configuration
    late_dropout: float  # mean dropout of the second half of the trials
    trials: list[optuna.trial.FrozenTrial] = field(default_factory=list)
    gain: float = 0.0  # best_test minus the reference configuration's (noise-free)
    top_test: float = 0.0  # the best noise-free test accuracy among the trials it ran


def true_test_accuracy(surrogate: Surrogate, params: dict) -> float:
    """The noise-free test accuracy of a configuration at its best epoch under its patience."""
    val, test = surrogate.curves(params)
    patience = surrogate.space.regularizers(params).patience
    run = early_stopped(val, patience)
    return float(test[int(np.argmin(val[:run]))])


def choose_finalist(
    surrogate: Surrogate, trials: list[optuna.trial.FrozenTrial], count: int, seed: int
) -> dict:
    """What search.report names the best: of the `count` complete trials of lowest validation
    loss, the one of lowest mean best validation loss over REPORT_SEEDS fresh training runs."""
    candidates = [trial.params for trial in summary.finalists(trials, count)]
    rng = np.random.default_rng([seed, 1])  # apart from the search's: its path stays the same

    def mean_val_loss(params: dict) -> float:
        patience = surrogate.space.regularizers(params).patience
        runs = [surrogate.noisy_curves(params, rng)[0] for _ in range(REPORT_SEEDS)]
        return statistics.fmean(float(v[: early_stopped(v, patience)].min()) for v in runs)

    return min(candidates, key=mean_val_loss) if len(candidates) > 1 else candidates[0]


def simulate(
    surrogate: Surrogate,
    strategy: Strategy,
    seed: int,
    trials: int = 50,
    workers: int = 1,
    finalists: int = 1,
) -> Outcome:
    """Run one search of `trials` trials against the surrogate, as search.cifar would, and
    recommend what search.report would with `finalists`.

    `workers` trials run at once, as with `--jobs`: every epoch takes one unit of time, the
    trials report their epochs in time order (so the pruner compares a trial with what the
    others had reported by then), and a worker asks for its next trial when its last one ends,
    while the others are still running (TPE's constant liar sees them).
    """
    space = strategy.space(surrogate.space)
    study = optuna.create_study(
        study_name=f"simulated-{seed}",
        direction="minimize",
        sampler=strategy.make_sampler(seed),
        pruner=strategy.make_pruner(),
    )
    queued = list(baselines(surrogate.space).items())
    if strategy.baselines != "last":
        _enqueue(study, queued)
    _enqueue(
        study, [(None, run.params) for run in planned_runs(space, strategy.sobol_start, 0, seed)]
    )
    for index, params in enumerate(space.start_design(strategy.design, seed)):
        study.enqueue_trial(params, user_attrs={START_DESIGN_ATTR: index})
    rng = np.random.default_rng(seed)
    epochs = started = now = 0
    running: list[tuple[int, int, _Running]] = []  # (time of its next epoch, tie-break, trial)
    while started < trials or running:
        while len(running) < workers and started < trials:
            if strategy.baselines == "last" and started == trials - len(queued):
                _enqueue(study, queued)
            heapq.heappush(running, (now + 1, started, _start(study, space, surrogate, rng)))
            started += 1
        now, order, trial = heapq.heappop(running)
        epochs += 1
        if trial.step(strategy.chance_stop):
            heapq.heappush(running, (now + 1, order, trial))
        else:
            trial.tell(study)
    finished = study.get_trials(deepcopy=False)
    best = choose_finalist(surrogate, finished, finalists, seed)
    late = [t.params[DROPOUT] for t in finished[len(finished) // 2 :]]
    return Outcome(
        strategy=strategy.name,
        seed=seed,
        epochs=epochs,
        pruned=sum(t.state == TrialState.PRUNED for t in finished),
        best_params=best,
        best_test=true_test_accuracy(surrogate, best),
        late_dropout=statistics.fmean(late),
        trials=finished,
        gain=true_test_accuracy(surrogate, best)
        - true_test_accuracy(surrogate, baselines(surrogate.space)[REFERENCE]),
        top_test=max(true_test_accuracy(surrogate, t.params) for t in finished),
    )


@dataclass
class _Running:
    """A simulated trial between its epochs."""

    trial: optuna.Trial
    val: np.ndarray  # its validation loss per epoch, up to where its patience stops it
    epoch: int = 0
    pruned: bool = False

    def step(self, chance_stop: bool) -> bool:
        """Train and report the next epoch; whether the trial goes on."""
        self.epoch += 1
        value = float(self.val[self.epoch - 1])
        self.trial.report(value, self.epoch)
        if starts_the_study(self.trial.user_attrs):
            return self.epoch < len(self.val)
        stuck = chance_stop and stuck_at_chance(self.epoch, EPOCHS, value, CIFAR10_CHANCE_LOSS)
        self.pruned = stuck or (asks_pruner(self.epoch, EPOCHS) and self.trial.should_prune())
        return not self.pruned and self.epoch < len(self.val)

    def tell(self, study: optuna.Study) -> None:
        if self.pruned:
            study.tell(self.trial, state=TrialState.PRUNED)
        else:
            study.tell(self.trial, float(self.val[: self.epoch].min()))


def _start(
    study: optuna.Study, space: SearchSpace, surrogate: Surrogate, rng: np.random.Generator
) -> _Running:
    trial = study.ask()
    params = space.suggest(trial)
    val, _ = surrogate.noisy_curves(params, rng)
    return _Running(trial, val[: early_stopped(val, space.regularizers(params).patience)])


def _enqueue(study: optuna.Study, queued: list[tuple[str | None, dict]]) -> None:
    for name, params in queued:
        study.enqueue_trial(params, user_attrs={BASELINE_ATTR: name} if name else None)


def compare(
    surrogate: Surrogate,
    strategies: list[Strategy],
    seeds: Sequence[int],
    trials: int,
    workers: int = 1,
    finalists: int = 1,
) -> dict[str, list[Outcome]]:
    """Every strategy on the same study seeds."""
    return {
        s.name: [simulate(surrogate, s, seed, trials, workers, finalists) for seed in seeds]
        for s in strategies
    }


def summary_rows(outcomes: dict[str, list[Outcome]], reference: str = "none") -> list[dict]:
    """Per strategy: epochs against the reference strategy on the same seeds, test accuracy ±
    std, the gain over the reference configuration (mean and worst seed), and how many seeds
    recommend within 1 point of the best configuration any of the searches ran."""
    base = {o.seed: o for o in outcomes.get(reference, [])}
    best_known = max(o.top_test for runs in outcomes.values() for o in runs)
    rows = []
    for name, runs in outcomes.items():
        share = [o.epochs / base[o.seed].epochs for o in runs if o.seed in base]
        loss = [base[o.seed].best_test - o.best_test for o in runs if o.seed in base]
        tests = [o.best_test for o in runs]
        rows.append(
            {
                "strategy": name,
                "epochs_share": statistics.fmean(share) if share else math.nan,
                "test_mean": statistics.fmean(tests),
                "test_std": statistics.stdev(tests) if len(tests) > 1 else 0.0,
                "test_loss_vs_reference": statistics.fmean(loss) if loss else math.nan,
                "within_1_point": sum(x <= 0.01 for x in loss),
                "gain_mean": statistics.fmean(o.gain for o in runs),
                "gain_min": min(o.gain for o in runs),
                "near_best": sum(o.best_test >= best_known - 0.01 for o in runs),
                "seeds": len(runs),
                "pruned": statistics.fmean(o.pruned for o in runs),
                "late_dropout": statistics.fmean(o.late_dropout for o in runs),
            }
        )
    return rows


def format_table(rows: list[dict], reference: str) -> str:
    lines = [
        f"| strategy | epochs vs {reference} | pruned | test acc. (mean ± std) | "
        f"loss vs {reference} | within 1 pt | dropout, 2nd half | gain over reference "
        "(mean / worst) | within 1 pt of best |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['strategy']} | {r['epochs_share']:.0%} | {r['pruned']:.1f} | "
            f"{r['test_mean']:.4f} ± {r['test_std']:.4f} | {r['test_loss_vs_reference']:+.4f} | "
            f"{r['within_1_point']}/{r['seeds']} | {r['late_dropout']:.2f} | "
            f"{100 * r['gain_mean']:+.1f} / {100 * r['gain_min']:+.1f} pt | "
            f"{r['near_best']}/{r['seeds']} |"
        )
    return "\n".join(lines)


def format_details(outcomes: dict[str, list[Outcome]], space: SearchSpace) -> str:
    """One line per simulated search: what it trained and which configuration it recommends."""
    lines = []
    for name, runs in outcomes.items():
        for o in runs:
            lines.append(
                f"{name} seed {o.seed}: {o.epochs} epochs, {o.pruned} pruned, best "
                f"{space.describe(o.best_params)} (test {o.best_test:.4f}), "
                f"dropout of the 2nd half {o.late_dropout:.2f}"
            )
    return "\n".join(lines)


def _strategy(name: str) -> str:
    if name not in STRATEGIES:
        raise argparse.ArgumentTypeError(f"unknown strategy {name!r}: the names end --help")
    return name


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog=PROG,
        description="Compare search strategies (sampler, pruner, what the sampler sees) in "
        "simulated CIFAR-10 searches against a surrogate of a curve bank.",
        epilog="strategies: " + ", ".join(STRATEGIES),
    )
    add = parser.add_argument
    add("--bank", default=DEFAULT_BANK, help="curve bank recorded by search.tools.bank")
    # The names are listed once, below, rather than in the usage line of each flag.
    add(
        "--strategy",
        nargs="+",
        type=_strategy,
        default=list(STRATEGIES),
        metavar="NAME",
        help="strategies to compare (default: all of those listed below)",
    )
    add(
        "--reference",
        type=_strategy,
        default="none",
        metavar="NAME",
        help="the strategy the others are compared against",
    )
    add("--seeds", type=positive_int, default=20, help="study seeds 0..N-1 per strategy")
    add("--trials", type=positive_int, default=50, help="trials per simulated search")
    add("--workers", type=positive_int, default=2, help="trials at once, as with --jobs")
    add(
        "--finalists",
        type=positive_int,
        default=3,
        help=f"recommend as search.report does: of this many trials of lowest validation loss, "
        f"the one of lowest mean over {REPORT_SEEDS} re-training runs (1: the search's best)",
    )
    add(
        "--recorded-only",
        action="store_true",
        help="fit the surrogate on the recorded runs only, not also on the imported search "
        "trials (whose test accuracy per epoch is imputed)",
    )
    add(
        "--surrogate",
        choices=SURROGATES,
        default="kernel",
        help="kernel: a kernel-weighted average of the recorded curves; nearest: the nearest "
        "recorded configuration's",
    )
    add("--details", action="store_true", help="also print each search's recommendation")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        surrogate = Surrogate(
            read_bank(args.bank), search_space(EPOCHS), args.surrogate, not args.recorded_only
        )
    except UsageError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    print(
        f"{args.surrogate} surrogate: {surrogate.runs} runs of {args.bank}, leave-one-out error "
        f"{surrogate.loo_error:.3f} (standardized), {len(surrogate.noise_curves)} noise curves"
    )
    names = list(dict.fromkeys([args.reference, *args.strategy]))
    started = time.perf_counter()
    strategies = [STRATEGIES[n] for n in names]
    outcomes = compare(
        surrogate, strategies, range(args.seeds), args.trials, args.workers, args.finalists
    )
    print(format_table(summary_rows(outcomes, args.reference), args.reference))
    if args.details:
        print(format_details(outcomes, surrogate.space))
    print(f"{len(names)} strategies x {args.seeds} seeds in {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
