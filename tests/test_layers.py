"""The book's objects used one at a time, as in the batch example's loop, on any backend."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_on_backend, spiral

import xpnn


def test_seed_loop_ported_line_by_line(backend):
    X, y = spiral(100, 3)
    dense1 = xpnn.Dense(2, 64, backend=backend, seed=0)
    activation1 = xpnn.ReLU(backend=backend)
    dense2 = xpnn.Dense(64, 3, backend=backend, seed=1)
    loss_activation = xpnn.SoftmaxCategoricalCrossentropy(backend=backend)
    optimizer = xpnn.Adam(learning_rate=0.05, decay=5e-7)
    accuracy = xpnn.CategoricalAccuracy(backend=backend)
    be = dense1.backend
    first_loss = None
    for _ in range(300):  # full batch, as the book's chapter before batching
        dense1.forward(X)  # host arrays move to the layer's device
        activation1.forward(dense1.output)
        dense2.forward(activation1.output)
        loss = loss_activation.forward(dense2.output, y)
        first_loss = loss if first_loss is None else first_loss
        loss_activation.backward(loss_activation.output, y)
        dense2.backward(loss_activation.dinputs)
        activation1.backward(dense2.dinputs)
        dense1.backward(activation1.dinputs)
        optimizer.pre_update_params()
        optimizer.update_params(dense1)
        optimizer.update_params(dense2)
        optimizer.post_update_params()
    predictions = loss_activation.activation.predictions(loss_activation.output)
    acc = accuracy.calculate(predictions, y)
    for array in (dense1.output, dense1.dweights, dense1.dinputs, loss, acc, predictions):
        assert_on_backend(array, be)
    assert float(xpnn.to_numpy(loss)) < 0.8 * float(xpnn.to_numpy(first_loss))
    assert float(xpnn.to_numpy(acc)) > 0.6
    assert optimizer.iterations == 300


def test_dense_initial_values_follow_the_book(backend):
    layer = xpnn.Dense(50, 40, backend=backend, seed=0)
    weights = xpnn.to_numpy(layer.weights)
    assert weights.shape == (50, 40) and layer.biases.shape == (1, 40)
    assert np.all(xpnn.to_numpy(layer.biases) == 0)
    assert 0.008 < weights.std() < 0.012  # 0.01 * N(0, 1)
    same = xpnn.Dense(50, 40, backend="numpy", seed=0)
    np.testing.assert_array_equal(xpnn.to_numpy(same.weights), weights)


def test_layers_refuse_arrays_of_another_backend(backend):
    """A device array handed to a NumPy layer is refused, not copied behind the user's back."""
    if backend == "numpy":
        pytest.skip("NumPy arrays are host data, which every backend moves on purpose")
    foreign = xpnn.get_backend(backend).zeros((2, 2))
    with pytest.raises(TypeError, match=r"inputs is a .* array"):
        xpnn.Dense(2, 3, backend="numpy").forward(foreign)


@pytest.mark.parametrize(
    ("args", "error", "argument"),
    [
        ((0, 3), ValueError, "n_inputs"),
        ((2, 2.5), TypeError, "n_neurons"),
        ((True, 3), TypeError, "n_inputs"),
    ],
)
def test_dense_refuses_bad_sizes(args, error, argument):
    with pytest.raises(error, match=argument):
        xpnn.Dense(*args)


def test_accuracy_with_sparse_and_one_hot_labels(backend):
    metric = xpnn.CategoricalAccuracy(backend=backend)
    be = metric.backend
    predictions = be.asarray([0, 2, 1, 1], dtype=be.index_dtype)
    labels = np.array([0, 2, 2, 1])
    for y in (labels, np.eye(3)[labels]):
        value = metric.calculate(predictions, y)
        assert_on_backend(value, be)
        assert float(xpnn.to_numpy(value)) == 0.75


class _LooksLikeCupy:
    """What xpnn sees of a CuPy array: its module, and no ``__array_namespace__`` (CuPy 14)."""

    __module__ = "cupy._core.core"
    shape, ndim, device = (2, 2), 2, "<CUDA Device 0>"

    def __array__(self, *args, **kwargs):
        raise TypeError("Implicit conversion to a NumPy array is not allowed")


class _CudaArray:
    """Any GPU library's array: it exposes ``__cuda_array_interface__``."""

    shape, ndim = (2, 2), 2

    @property
    def __cuda_array_interface__(self):
        return {"shape": self.shape, "typestr": "<f4", "version": 3}


@pytest.mark.parametrize("foreign", [_LooksLikeCupy, _CudaArray])
def test_gpu_arrays_without_the_array_api_are_refused(backend, foreign):
    """CuPy arrays lack ``__array_namespace__``; they are refused all the same, by name."""
    X = foreign()
    if backend == "cupy" and foreign is _LooksLikeCupy:
        pytest.skip("on the cupy backend a real CuPy array is its own")
    with pytest.raises(TypeError, match=r"inputs is a .* array"):
        xpnn.Dense(2, 3, backend=backend).forward(X)
    model = xpnn.Model(backend=backend)
    model.add(xpnn.Dense(2, 3))
    model.set(loss=xpnn.MeanSquaredError(), optimizer=xpnn.SGD())
    model.finalize()
    with pytest.raises(TypeError, match=r"^X is a .* array"):
        model.train(X, np.zeros((2, 3)))
    with pytest.raises(TypeError, match=r"^X is a .* array"):
        model.predict(X)
