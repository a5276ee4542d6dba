"""The search space: the one place that names the regularizers and their ranges.

The parameter names below are the schema of every study: objectives, reports and the dashboard
read trial params by these names and nothing else.
"""

import math
from dataclasses import asdict, dataclass, field

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from models.activations import ACTIVATIONS

DROPOUT = "dropout"
WEIGHT_DECAY = "weight_decay"
L1 = "l1"
ACTIVATION = "activation"
PATIENCE = "patience"
PARAM_NAMES = (DROPOUT, WEIGHT_DECAY, L1, ACTIVATION, PATIENCE)
CLASSIC_DROPOUT = 0.5  # where a start design tries every activation


@dataclass(frozen=True)
class Regularizers:
    """The values a training run applies; a penalty of 0.0 is off, patience None is off."""

    dropout: float = 0.0
    weight_decay: float = 0.0
    l1: float = 0.0
    activation: str = "relu"
    patience: int | None = None


@dataclass(frozen=True)
class SearchSpace:
    """Ranges of one task. Penalties are searched on a log scale whose lower end means "off".

    A log scale cannot hold 0, and TPE cannot model an out-of-range 0 either, so the lowest
    value of each penalty range is applied as exactly 0: the baselines are enqueued there, and
    a sampled value next to it is practically off anyway. Likewise patience == epochs means no
    early stopping, since a run of `epochs` epochs never sees that many non-improving ones.

    A range left None is not searched: the regularizer is off, or takes its value in `fixed`
    (applied values by param name, e.g. {"dropout": 0.1}; a fixed activation by its name).
    """

    dropout: tuple[float, float] | None = None
    weight_decay: tuple[float, float] | None = None
    l1: tuple[float, float] | None = None
    patience: tuple[int, int] | None = None
    activations: tuple[str, ...] = ()  # empty where the model has no hidden layer
    fixed: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        chosen = set(self.activations) | {self.fixed.get(ACTIVATION, "relu")}
        unknown = chosen - set(ACTIVATIONS)
        if unknown:
            raise ValueError(f"unknown activation(s) {sorted(unknown)}: use {list(ACTIVATIONS)}")

    @property
    def searched(self) -> tuple[str, ...]:
        """The param names a trial suggests, in PARAM_NAMES order."""
        ranges = {
            DROPOUT: self.dropout,
            WEIGHT_DECAY: self.weight_decay,
            L1: self.l1,
            ACTIVATION: self.activations or None,
            PATIENCE: self.patience,
        }
        return tuple(name for name in PARAM_NAMES if ranges[name] is not None)

    @property
    def reference_activation(self) -> str:
        """The activation of the configurations with every regularizer off."""
        if not self.activations or "relu" in self.activations:
            return self.fixed.get(ACTIVATION, "relu")
        return self.activations[0]

    def suggest(self, trial: optuna.Trial) -> dict[str, float | int | str]:
        params: dict[str, float | int | str] = {}
        if self.dropout is not None:
            params[DROPOUT] = trial.suggest_float(DROPOUT, *self.dropout)
        if self.weight_decay is not None:
            params[WEIGHT_DECAY] = trial.suggest_float(WEIGHT_DECAY, *self.weight_decay, log=True)
        if self.l1 is not None:
            params[L1] = trial.suggest_float(L1, *self.l1, log=True)
        if self.patience is not None:
            params[PATIENCE] = trial.suggest_int(PATIENCE, *self.patience, log=True)
        if self.activations:
            params[ACTIVATION] = trial.suggest_categorical(ACTIVATION, self.activations)
        return params

    def distributions(self) -> dict[str, BaseDistribution]:
        """The Optuna distributions `suggest` samples, by param name (for code that builds
        trials without a study, like the search simulator)."""
        distributions: dict[str, BaseDistribution] = {}
        if self.dropout is not None:
            distributions[DROPOUT] = FloatDistribution(*self.dropout)
        if self.weight_decay is not None:
            distributions[WEIGHT_DECAY] = FloatDistribution(*self.weight_decay, log=True)
        if self.l1 is not None:
            distributions[L1] = FloatDistribution(*self.l1, log=True)
        if self.patience is not None:
            distributions[PATIENCE] = IntDistribution(*self.patience, log=True)
        if self.activations:
            distributions[ACTIVATION] = CategoricalDistribution(self.activations)
        return distributions

    def regularizers(self, params: dict) -> Regularizers:
        """Turn trial params into applied values (the "off" ends become 0 / None); a
        regularizer that is not searched is off or fixed."""

        def penalty(name: str, low: float) -> float:
            value = float(params[name])
            return 0.0 if value <= low else value

        applied = asdict(Regularizers()) | self.fixed
        if self.dropout is not None:
            applied[DROPOUT] = float(params[DROPOUT])
        if self.weight_decay is not None:
            applied[WEIGHT_DECAY] = penalty(WEIGHT_DECAY, self.weight_decay[0])
        if self.l1 is not None:
            applied[L1] = penalty(L1, self.l1[0])
        if self.activations:
            applied[ACTIVATION] = str(params[ACTIVATION])
        if self.patience is not None:
            patience = int(params[PATIENCE])
            applied[PATIENCE] = None if patience >= self.patience[1] else patience
        return Regularizers(**applied)

    def describe(self, params: dict) -> str:
        """Params as applied, e.g. "dropout=0.25 weight_decay=off l1=off patience=off"."""
        applied = asdict(self.regularizers(params))
        parts = []
        for name in PARAM_NAMES:
            if name in params:
                value = applied[name]
                if value is None or (value == 0.0 and name in (WEIGHT_DECAY, L1)):
                    value = "off"
                parts.append(
                    f"{name}={value:.3g}" if isinstance(value, float) else f"{name}={value}"
                )
        return " ".join(parts)

    def params_for(self, dropout: float, activation: str | None = None) -> dict:
        """Params of a configuration with every penalty and early stopping off (the
        activation: `reference_activation` unless given)."""
        params: dict = {}
        if self.dropout is not None:
            params[DROPOUT] = dropout
        if self.weight_decay is not None:
            params[WEIGHT_DECAY] = self.weight_decay[0]
        if self.l1 is not None:
            params[L1] = self.l1[0]
        if self.patience is not None:
            params[PATIENCE] = self.patience[1]
        if self.activations:
            params[ACTIVATION] = activation or self.reference_activation
        return params

    def start_design(self, trials: int, seed: int) -> list[dict]:
        """The first `trials` configurations a new study runs after its baselines.

        First the classic ones: each activation (in the space's order) with dropout 0.5, the
        rate Srivastava et al. (JMLR 2014) recommend for hidden units, and every other
        regularizer off, so that the sampler's first complete trials compare the activations
        at a strong dropout. Then, past one per activation, a Latin hypercube (McKay et al.
        1979) over the whole space: each range cut into equal strata (log scale for the
        penalties and patience), each stratum sampled once.
        """
        classic = []
        if self.dropout is not None or self.activations:
            dropout = CLASSIC_DROPOUT
            if self.dropout is not None:
                dropout = min(max(CLASSIC_DROPOUT, self.dropout[0]), self.dropout[1])
            classic = [self.params_for(dropout, name) for name in self.activations or (None,)]
        if trials <= len(classic):
            return classic[: max(0, trials)]
        # One dimension per searched parameter, the activation last: with every range
        # searched, dropout, weight decay, L1, patience, activation.
        numeric = [
            (name, bounds)
            for name, bounds in (
                (DROPOUT, self.dropout),
                (WEIGHT_DECAY, self.weight_decay),
                (L1, self.l1),
                (PATIENCE, self.patience),
            )
            if bounds is not None
        ]
        dims = len(numeric) + bool(self.activations)
        # Imported here: scipy.stats takes 0.6 s to import, a tenth of a linear search, and
        # only the worker that enqueues the start design needs it.
        from scipy.stats import qmc

        points = qmc.LatinHypercube(d=dims, seed=seed).random(trials - len(classic))
        design = classic
        for u in points:
            params: dict = {}
            for column, (name, (low, high)) in enumerate(numeric):
                if name == DROPOUT:
                    params[name] = float(low + u[column] * (high - low))
                elif name == PATIENCE:
                    params[name] = min(round(_log_scale(u[column], (low, high))), high)
                else:
                    params[name] = _log_scale(u[column], (low, high))
            if self.activations:
                params[ACTIVATION] = self.activations[int(u[-1] * len(self.activations))]
            design.append(params)
        return design

    def to_dict(self) -> dict:
        """The space as stored in a study's settings (JSON); `from_dict` reads it back."""
        stored: dict = {
            name: list(value)
            for name, value in asdict(self).items()
            if value is not None and name != "fixed"
        }
        if self.fixed:  # absent for the built-in tasks, whose stored settings predate it
            stored["fixed"] = dict(self.fixed)
        return stored

    @classmethod
    def from_dict(cls, stored: dict) -> "SearchSpace":
        def bounds(name: str) -> tuple | None:
            return tuple(stored[name]) if stored.get(name) is not None else None

        return cls(
            dropout=bounds(DROPOUT),
            weight_decay=bounds(WEIGHT_DECAY),
            l1=bounds(L1),
            patience=bounds(PATIENCE),
            activations=tuple(stored.get("activations", ())),
            fixed=dict(stored.get("fixed", {})),
        )


def _log_scale(u: float, bounds: tuple[float, float]) -> float:
    """The point a fraction `u` of the way from low to high on a log scale."""
    low, high = bounds
    return math.exp(math.log(low) + u * (math.log(high) - math.log(low)))
