"""xpnn side of a benchmark: the workload's model through xpnn's public Model API."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
from workloads import Workload

import xpnn


def build(
    workload: Workload, X: np.ndarray, y: np.ndarray, backend: str, seed: int = 0
) -> Callable[[int], tuple[float, float, int]]:
    """A function that trains ``epochs`` more epochs and returns (loss, accuracy, steps run).

    Loss and accuracy are those of the last epoch; ``train`` reads them from the device once, at
    its end, so every call ends synchronised with the device.
    """
    model = xpnn.Model(backend=backend, seed=seed)
    widths = workload.widths
    for index, (n_inputs, n_neurons) in enumerate(itertools.pairwise(widths)):
        model.add(xpnn.Dense(n_inputs, n_neurons))
        model.add(xpnn.ReLU() if index < len(widths) - 2 else xpnn.Softmax())
    model.set(
        loss=xpnn.CategoricalCrossentropy(),
        optimizer=xpnn.Adam(learning_rate=workload.learning_rate, decay=workload.decay),
        accuracy=xpnn.CategoricalAccuracy(),
    )
    model.finalize()

    def train(epochs: int) -> tuple[float, float, int]:
        before = model.optimizer.iterations
        history = model.train(X, y, epochs=epochs, batch_size=workload.batch_size, verbose=False)
        steps = model.optimizer.iterations - before
        return history["loss"][-1], history["accuracy"][-1], steps

    return train


def library_info() -> dict[str, str]:
    """Versions of what this side runs on."""
    return {"xpnn": xpnn.__version__, "numpy": np.__version__}
