"""The benchmark workloads: model shape, training settings and data, shared by both sides."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Workload:
    """One network and its training settings; ``threads`` 0 means all cores."""

    name: str
    widths: tuple[int, ...]  # layer widths, input first: (2, 64, 3) is Dense(2, 64), Dense(64, 3)
    batch_size: int
    learning_rate: float
    decay: float
    threads: int
    data: str  # "spiral", "normal", "growth" or "digits": see make_data
    peer: str = "torch"  # what xpnn is measured beside: "torch", or "sklearn" (estimators)


WORKLOADS = {
    "W1": Workload("W1", (2, 64, 3), 128, 0.05, 5e-7, threads=1, data="spiral"),
    "W2": Workload("W2", (784, 512, 512, 10), 256, 1e-3, 0.0, threads=0, data="normal"),
    "W3": Workload("W3", (2, 64, 3), 128, 0.05, 5e-7, threads=1, data="growth"),
    "W4": Workload(
        "W4", (64, 128, 128, 10), 128, 1e-3, 0.0, threads=1, data="digits", peer="sklearn"
    ),
}


def make_data(workload: Workload, samples: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)``: float32 inputs and int64 class labels, the same for both sides.

    spiral: nnfs ``spiral_data(samples, 3)`` (``samples`` per class) from NumPy's global generator
    seeded with ``seed``; normal: ``samples`` standard-normal rows with uniform random labels;
    growth: two Gaussian features whose labels come from the angle, ``samples`` rows; digits:
    scikit-learn's bundled 8x8 digits (1797 rows, ``samples`` ignored), each feature scaled to
    zero mean and unit variance.
    """
    features, classes = workload.widths[0], workload.widths[-1]
    if workload.data == "spiral":
        from nnfs.datasets import spiral_data  # nnfs.init() is never called: it patches NumPy

        np.random.seed(seed)  # noqa: NPY002 -- nnfs draws from NumPy's global generator
        X, y = spiral_data(samples=samples, classes=classes)
        return X.astype(np.float32), y.astype(np.int64)
    if workload.data == "digits":
        from sklearn.datasets import load_digits
        from sklearn.preprocessing import StandardScaler

        X, y = load_digits(return_X_y=True)
        return StandardScaler().fit_transform(X).astype(np.float32), y.astype(np.int64)
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((samples, features), dtype=np.float32)
    if workload.data == "normal":
        return X, rng.integers(0, classes, samples, dtype=np.int64)
    angle = np.arctan2(X[:, 1], X[:, 0]) + np.pi  # in [0, 2 pi]: one wedge per class
    y = np.minimum((angle / (2 * np.pi) * classes).astype(np.int64), classes - 1)
    return X, y


def steps_per_epoch(samples: int, batch_size: int) -> int:
    """Batches in one epoch, the partial last one included."""
    return -(-samples // batch_size)
