"""W4's two sides: xpnn's MLPClassifier (xpnn.sklearn) and scikit-learn's, matched settings.

Both fit a fresh estimator of the same shape on the same 75% of the data, in float32, with
Adam (``learning_rate_init``), the same batch size and ``alpha=1e-4`` (scikit-learn's default;
xpnn scales it as scikit-learn does), shuffled, for exactly the epochs asked:
scikit-learn's is given ``tol=0`` and ``n_iter_no_change`` equal to the epochs, so its
convergence test never stops it early. The accuracy is on the held-out 25%.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import sklearn
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from workloads import Workload

import xpnn

ALPHA = 1e-4  # scikit-learn's default L2 penalty, on both sides


def build(
    impl: str, workload: Workload, X: np.ndarray, y: np.ndarray, backend: str, seed: int = 0
) -> Callable[[int], tuple[float, float, int, int]]:
    """A function that fits a fresh estimator for ``epochs`` epochs and returns (final
    training loss, held-out accuracy, steps run, host reads during the fit)."""
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=seed
    )
    hidden = workload.widths[1:-1]
    settings = {
        "hidden_layer_sizes": hidden,
        "alpha": ALPHA,
        "batch_size": workload.batch_size,
        "learning_rate_init": workload.learning_rate,
        "shuffle": True,
        "random_state": seed,
    }
    steps_per_epoch = -(-X_train.shape[0] // workload.batch_size)
    if impl == "xpnn":
        from xpnn_side import _count_host_reads

        from xpnn.sklearn import MLPClassifier

        reads = _count_host_reads()

        def make(epochs: int) -> MLPClassifier:
            return MLPClassifier(**settings, max_iter=epochs, backend=backend)
    else:
        from sklearn.neural_network import MLPClassifier

        reads = {"count": 0}  # it computes on the host: nothing to transfer

        def make(epochs: int) -> MLPClassifier:
            return MLPClassifier(
                **settings, solver="adam", max_iter=epochs, tol=0.0, n_iter_no_change=epochs
            )

    def train(epochs: int) -> tuple[float, float, int, int]:
        before = reads["count"]
        estimator = make(epochs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter reached: expected
            estimator.fit(X_train, y_train)
        host_reads = reads["count"] - before
        if estimator.n_iter_ != epochs:
            raise RuntimeError(f"{impl} ran {estimator.n_iter_} epochs, not {epochs}")
        accuracy = float(estimator.score(X_test, y_test))
        return estimator.loss_curve_[-1], accuracy, epochs * steps_per_epoch, host_reads

    return train


def library_info() -> dict[str, str]:
    """Versions of what this side runs on."""
    return {"xpnn": xpnn.__version__, "sklearn": sklearn.__version__, "numpy": np.__version__}
