"""Models and hand-written loops trained at once from several threads, each as if alone.

Every model on a backend shares one backend object, so the backend must keep nothing that
belongs to one computation. The interpreter is told to switch threads every microsecond, so the
two runs interleave inside every step. BLAS is held to one thread for the test: how OpenBLAS
splits a product over its threads changes the last bits, and that is not what is tested here.
"""

from __future__ import annotations

import itertools
import sys
import threading

import numpy as np
import pytest
from helpers import book_step, spiral
from parts import OPTIMIZERS
from threadpoolctl import threadpool_limits

import xpnn

# (layer widths, samples): the batch example's network, and one of 160k parameters.
SIZES = {"small": ((2, 64, 3), 300), "large": ((100, 400, 300, 10), 256)}


@pytest.fixture(autouse=True)
def interleaved():
    """Switch threads as often as the interpreter allows, on one BLAS thread."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        sys.setswitchinterval(interval)


def _data(widths, samples, seed):
    if widths[0] == 2:
        return spiral(samples // 3, 3, seed=seed)
    rng = np.random.default_rng(seed)
    return rng.standard_normal((samples, widths[0])), rng.integers(0, widths[-1], samples)


def _model(backend, widths, optimizer, seed):
    model = xpnn.Model(backend=backend, seed=seed)
    for index, (n_in, n_out) in enumerate(itertools.pairwise(widths)):
        model.add(xpnn.Dense(n_in, n_out))
        model.add(xpnn.ReLU() if index < len(widths) - 2 else xpnn.Softmax())
    model.set(
        loss=xpnn.CategoricalCrossentropy(),
        optimizer=OPTIMIZERS[optimizer].make(),
        accuracy=xpnn.CategoricalAccuracy(),
    )
    model.finalize()
    return model


def _at_once(*jobs):
    """Run every job in its own thread, all started together; return their results."""
    results, errors = [None] * len(jobs), []
    start = threading.Barrier(len(jobs))

    def run(index, job):
        try:
            start.wait()
            results[index] = job()
        except BaseException as error:  # reported in the main thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=item) for item in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_two_models_in_threads_end_as_each_alone(backend, optimizer, size):
    widths, samples = SIZES[size]
    runs = [(seed, _data(widths, samples, seed)) for seed in (1, 2)]

    def train(seed, data):
        model = _model(backend, widths, optimizer, seed)
        history = model.train(*data, epochs=3, batch_size=64, verbose=False)
        return model.get_parameters(), history["loss"]

    alone = [train(seed, data) for seed, data in runs]
    together = _at_once(*(lambda seed=seed, data=data: train(seed, data) for seed, data in runs))
    for (params_alone, loss_alone), (params_together, loss_together) in zip(alone, together):
        assert loss_together == loss_alone
        for layer_alone, layer_together in zip(params_alone, params_together):
            for a, b in zip(layer_alone, layer_together):
                np.testing.assert_array_equal(b, a)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_two_hand_written_loops_in_threads_end_as_each_alone(backend, optimizer):
    """The book's loop, with its own layers and optimizer in each thread, on one backend."""

    data = {seed: spiral(100, 3, seed=seed) for seed in (1, 2)}  # NumPy's global generator

    def loop(seed):
        X, y = data[seed]
        dense1 = xpnn.Dense(2, 64, backend=backend, seed=seed)
        relu = xpnn.ReLU(backend=backend)
        dense2 = xpnn.Dense(64, 3, backend=backend, seed=seed + 10)
        head = xpnn.SoftmaxCategoricalCrossentropy(backend=backend)
        opt = OPTIMIZERS[optimizer].make()
        for _ in range(30):
            book_step(dense1, relu, dense2, head, opt, X, y)
        return [xpnn.to_numpy(a) for a in (dense1.weights, dense1.biases, dense2.weights)]

    alone = [loop(seed) for seed in (1, 2)]
    together = _at_once(lambda: loop(1), lambda: loop(2))
    for arrays_alone, arrays_together in zip(alone, together):
        for a, b in zip(arrays_alone, arrays_together):
            np.testing.assert_array_equal(b, a)
