"""Models and faults shared by the data-parallel tests (test_distributed.py, mpi_worker.py)."""

from __future__ import annotations

import math

import numpy as np
from parts import OPTIMIZERS

import xpnn

#: (optimizer, samples per class of the 3-class spiral, global batch size) for every optimizer:
#: SGD on 903 samples in batches of 128, the others on 43 * 3 = 129 samples in batches of 32,
#: which leave a last batch of one sample, fewer than the ranks.
CASES = [(name, *((301, 128) if name == "SGD" else (43, 32))) for name in OPTIMIZERS]


def build(backend, optimizer="Adam", seed=3, hidden=16, dtype="float64", regularize=True):
    """2-hidden-3 with L1 and L2 penalties on the first layer (weights and biases)."""
    model = xpnn.Model(backend=backend, seed=seed, dtype=dtype)
    penalties = (1e-4, 5e-4, 2e-4, 1e-3) if regularize else (0, 0, 0, 0)
    model.add(xpnn.Dense(2, hidden, *penalties))
    model.add(xpnn.ReLU())
    model.add(xpnn.Dense(hidden, 3))
    model.add(xpnn.Softmax())
    model.set(
        loss=xpnn.CategoricalCrossentropy(),
        optimizer=OPTIMIZERS[optimizer].make(),
        accuracy=xpnn.CategoricalAccuracy(),
    )
    model.finalize()
    return model


#: The sizes of the ranks' parts in the MPI shard test, by the number of ranks.
SHARD_SIZES = {2: [70, 59], 3: [50, 40, 39]}


def build_without_metric(backend):
    """2-8-3 with softmax and cross-entropy, and no accuracy metric."""
    model = xpnn.Model(backend=backend, seed=4, dtype="float64")
    model.add(xpnn.Dense(2, 8))
    model.add(xpnn.ReLU())
    model.add(xpnn.Dense(8, 3))
    model.add(xpnn.Softmax())
    model.set(loss=xpnn.CategoricalCrossentropy(), optimizer=xpnn.SGD())
    model.finalize()
    return model


def flat(model) -> np.ndarray:
    return np.concatenate([a.ravel() for layer in model.get_parameters() for a in layer])


def build_dropout(backend):
    """2-32-3 with Dropout(0.5) after the hidden layer."""
    model = xpnn.Model(backend=backend, seed=5, dtype="float64")
    model.add(xpnn.Dense(2, 32))
    model.add(xpnn.ReLU())
    model.add(xpnn.Dropout(0.5))
    model.add(xpnn.Dense(32, 3))
    model.add(xpnn.Softmax())
    model.set(loss=xpnn.CategoricalCrossentropy(), optimizer=xpnn.Adam())
    model.finalize()
    return model


def inject_nan(model, at_call):
    """Make the model's training loss NaN at its ``at_call``-th step (of the finalized model:
    through the combined softmax and cross-entropy where the model trains through it)."""
    calls = []

    def poison(loss):
        calls.append(1)
        return loss * math.nan if len(calls) == at_call else loss

    if model.network.combined is not None:
        with_sums = model.network.combined.backward_with_sums

        def poisoned_sums(dvalues, y):
            loss_sum, right = with_sums(dvalues, y)
            return poison(loss_sum), right

        model.network.combined.backward_with_sums = poisoned_sums
        return
    forward = model.loss.forward
    model.loss.forward = lambda output, y: poison(forward(output, y))
