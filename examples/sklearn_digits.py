"""xpnn inside scikit-learn: a Pipeline of StandardScaler and xpnn's MLPClassifier, tuned by
GridSearchCV on the bundled 8x8 digits.

    python examples/sklearn_digits.py                  # CPU (NumPy)
    python examples/sklearn_digits.py --backend auto   # CuPy where a CUDA GPU is usable
    python examples/sklearn_digits.py --epochs 5       # a quick run
    python examples/sklearn_digits.py --dtype float32  # faster, on a GPU above all

The 1797 images (``sklearn.datasets.load_digits``, no download) are split into a stratified
training set and a held-out test set of 25%. A 3-fold grid search over the hidden layers, the
dropout rate and the learning rate picks the best pipeline on the training set, which
``GridSearchCV`` then refits on all of it. It prints the best parameters, their
cross-validated accuracy and the accuracy on the test set. Needs ``pip install "xpnn[sklearn]"``
(the ``examples`` extra has it).
"""

from __future__ import annotations

import argparse
import time

from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, ParameterGrid, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from xpnn.sklearn import MLPClassifier

GRID = {
    "mlpclassifier__hidden_layer_sizes": [(64,), (128, 64)],
    "mlpclassifier__dropout": [0.0, 0.2],
    "mlpclassifier__learning_rate_init": [1e-3, 5e-3],
}


class Help(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """--help shows the whole description as written, and every option's default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.help and "(default:" in action.help:
            return action.help  # says its default in its own words
        return super()._get_help_string(action)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=Help)
    parser.add_argument(
        "--backend",
        choices=["auto", "numpy", "cupy", "torch", "torch:cpu", "torch:cuda", "torch:mps"],
        default="numpy",
        help="where to train: auto picks CuPy where a CUDA GPU is usable; torch runs on PyTorch",
    )
    parser.add_argument("--epochs", type=int, default=60, help="max_iter of each fit")
    parser.add_argument("--batch-size", type=int, default=64, help="samples per step")
    parser.add_argument("--seed", type=int, default=0, help="random_state: weights, shuffles")
    parser.add_argument("--folds", type=int, default=3, help="cross-validation folds")
    parser.add_argument("--jobs", type=int, default=1, help="GridSearchCV's n_jobs (processes)")
    parser.add_argument(
        "--dtype",
        choices=["float32", "float64"],
        default=None,
        help="the estimator's dtype (default: the input's, float64 for the digits)",
    )
    args = parser.parse_args()

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=0
    )
    classifier = MLPClassifier(
        max_iter=args.epochs,
        batch_size=args.batch_size,
        random_state=args.seed,
        backend=args.backend,
        dtype=args.dtype,
    )
    search = GridSearchCV(
        make_pipeline(StandardScaler(), classifier), GRID, cv=args.folds, n_jobs=args.jobs
    )
    fits = args.folds * len(ParameterGrid(GRID))
    print(
        f"grid search on {len(X_train)} digits: {fits} fits of {args.epochs} epochs "
        f"on backend {args.backend!r} in {args.dtype or 'float64'}, then a refit of the best"
    )
    started = time.perf_counter()
    search.fit(X_train, y_train)
    seconds = time.perf_counter() - started

    best = {name.removeprefix("mlpclassifier__"): v for name, v in search.best_params_.items()}
    print(f"best parameters: {best}")
    print(f"cross-validated accuracy of the best: {search.best_score_:.3f}")
    print(f"test accuracy ({len(X_test)} held-out digits): {search.score(X_test, y_test):.3f}")
    model = search.best_estimator_[-1].model_
    print(f"the best network: {model!r}")
    print(f"{seconds:.1f} s for the search")


if __name__ == "__main__":
    main()
