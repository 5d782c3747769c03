"""xpnn side of a benchmark: the workload's model through xpnn's public Model API."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
from workloads import Workload

import xpnn


def build(
    workload: Workload, X: np.ndarray, y: np.ndarray, backend: str, seed: int = 0
) -> Callable[[int], tuple[float, float, int, int]]:
    """A function that trains ``epochs`` more epochs and returns (loss, accuracy, steps run,
    host reads).

    Loss and accuracy are those of the last epoch; ``train`` reads them from the device once per
    report (every 100 epochs and the last), so every call ends synchronised with the device.
    Host reads are counted where the model makes them, through the ``to_numpy`` of
    ``xpnn.training.evaluation``: on a GPU each one is a device synchronisation.
    """
    reads = _count_host_reads()
    model = _model(workload, backend, seed)

    def train(epochs: int) -> tuple[float, float, int]:
        before, reads_before = model.optimizer.iterations, reads["count"]
        history = model.train(X, y, epochs=epochs, batch_size=workload.batch_size, verbose=False)
        steps = model.optimizer.iterations - before
        return history["loss"][-1], history["accuracy"][-1], steps, reads["count"] - reads_before

    return train


def _model(workload: Workload, backend: str, seed: int) -> xpnn.Model:
    """The workload's network, finalized: Dense layers with ReLU between, softmax last."""
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
    return model


def initial_parameters(workload: Workload, seed: int = 0) -> list[tuple[np.ndarray, ...]]:
    """xpnn's initial ``(weights, biases)`` for every Dense layer (float32): every contender
    starts from them, so all train the same network from the same point."""
    return _model(workload, "numpy", seed).get_parameters()


def _count_host_reads() -> dict[str, int]:
    """Count the model's transfers to the host from now on (this process only)."""
    reads = {"count": 0}
    original = xpnn.training.evaluation.to_numpy

    def counting(a):
        reads["count"] += 1
        return original(a)

    xpnn.training.evaluation.to_numpy = counting
    return reads


def fast_path(backend: str) -> str:
    """What the backend runs: "numba" (compiled kernels), "numpy" (plain NumPy) or "cupy"."""
    return xpnn.get_backend(backend).fast_path


def library_info() -> dict[str, str]:
    """Versions of what this side runs on."""
    info = {"xpnn": xpnn.__version__, "numpy": np.__version__}
    if fast_path("numpy") == "numba":
        import numba

        info["numba"] = numba.__version__
    return info
