"""The search space: the one place that names the regularizers and their ranges.

The parameter names below are the schema of every study: objectives, reports and the dashboard
read trial params by these names and nothing else.
"""

import math
from dataclasses import asdict, dataclass

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from scipy.stats import qmc

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
    """

    dropout: tuple[float, float]
    weight_decay: tuple[float, float]
    l1: tuple[float, float]
    patience: tuple[int, int]
    activations: tuple[str, ...] = ()  # empty where the model has no hidden layer

    def __post_init__(self) -> None:
        unknown = set(self.activations) - set(ACTIVATIONS)
        if unknown:
            raise ValueError(f"unknown activation(s) {sorted(unknown)}: use {list(ACTIVATIONS)}")

    def suggest(self, trial: optuna.Trial) -> dict[str, float | int | str]:
        params: dict[str, float | int | str] = {
            DROPOUT: trial.suggest_float(DROPOUT, *self.dropout),
            WEIGHT_DECAY: trial.suggest_float(WEIGHT_DECAY, *self.weight_decay, log=True),
            L1: trial.suggest_float(L1, *self.l1, log=True),
            PATIENCE: trial.suggest_int(PATIENCE, *self.patience, log=True),
        }
        if self.activations:
            params[ACTIVATION] = trial.suggest_categorical(ACTIVATION, self.activations)
        return params

    def distributions(self) -> dict[str, BaseDistribution]:
        """The Optuna distributions `suggest` samples, by param name (for code that builds
        trials without a study, like the search simulator)."""
        distributions: dict[str, BaseDistribution] = {
            DROPOUT: FloatDistribution(*self.dropout),
            WEIGHT_DECAY: FloatDistribution(*self.weight_decay, log=True),
            L1: FloatDistribution(*self.l1, log=True),
            PATIENCE: IntDistribution(*self.patience, log=True),
        }
        if self.activations:
            distributions[ACTIVATION] = CategoricalDistribution(self.activations)
        return distributions

    def regularizers(self, params: dict) -> Regularizers:
        """Turn trial params into applied values (the "off" ends become 0 / None)."""

        def penalty(name: str, low: float) -> float:
            value = float(params[name])
            return 0.0 if value <= low else value

        patience = int(params[PATIENCE])
        return Regularizers(
            dropout=float(params[DROPOUT]),
            weight_decay=penalty(WEIGHT_DECAY, self.weight_decay[0]),
            l1=penalty(L1, self.l1[0]),
            activation=str(params.get(ACTIVATION, "relu")),
            patience=None if patience >= self.patience[1] else patience,
        )

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

    def params_for(self, dropout: float, activation: str = "relu") -> dict:
        """Params of a configuration with every penalty and early stopping off."""
        params: dict = {
            DROPOUT: dropout,
            WEIGHT_DECAY: self.weight_decay[0],
            L1: self.l1[0],
            PATIENCE: self.patience[1],
        }
        if self.activations:
            params[ACTIVATION] = activation
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
        classic = [
            self.params_for(min(max(CLASSIC_DROPOUT, self.dropout[0]), self.dropout[1]), name)
            for name in self.activations or ("relu",)
        ]
        if trials <= len(classic):
            return classic[: max(0, trials)]
        dims = 5 if self.activations else 4
        points = qmc.LatinHypercube(d=dims, seed=seed).random(trials - len(classic))
        design = classic
        for u in points:
            params: dict = {
                DROPOUT: float(self.dropout[0] + u[0] * (self.dropout[1] - self.dropout[0])),
                WEIGHT_DECAY: _log_scale(u[1], self.weight_decay),
                L1: _log_scale(u[2], self.l1),
                PATIENCE: min(round(_log_scale(u[3], self.patience)), self.patience[1]),
            }
            if self.activations:
                params[ACTIVATION] = self.activations[int(u[4] * len(self.activations))]
            design.append(params)
        return design

    def to_dict(self) -> dict:
        return {name: list(value) for name, value in asdict(self).items()}


def _log_scale(u: float, bounds: tuple[float, float]) -> float:
    """The point a fraction `u` of the way from low to high on a log scale."""
    low, high = bounds
    return math.exp(math.log(low) + u * (math.log(high) - math.log(low)))
