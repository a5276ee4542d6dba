"""The test number a task is judged by: the one place that chooses it."""

from dataclasses import dataclass

from search.attrs import TEST_ACCURACY_ATTR, TEST_LOSS_ATTR, TEST_MSE_ATTR


@dataclass(frozen=True)
class Metric:
    """The test number a task is judged by."""

    key: str  # user attr holding it
    higher_is_better: bool
    test_loss_key: str  # user attr comparable with train_loss and the validation loss

    def better(self, a: float, b: float) -> float:
        """How much better a is than b (positive: a wins)."""
        return a - b if self.higher_is_better else b - a


CLASSIFICATION = Metric(TEST_ACCURACY_ATTR, True, TEST_LOSS_ATTR)
REGRESSION = Metric(TEST_MSE_ATTR, False, TEST_MSE_ATTR)


def metric_for(settings: dict) -> Metric:
    """The metric of the task whose stored (or built) settings these are. The built-in tasks'
    settings predate the stored loss: CIFAR-10 classifies, the linear task regresses."""
    loss = settings.get("loss", "cross_entropy" if settings.get("task") == "cifar" else "mse")
    return CLASSIFICATION if loss == "cross_entropy" else REGRESSION
