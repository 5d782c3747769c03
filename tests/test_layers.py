"""The book's objects used one at a time, as in the batch example's loop, on any backend."""

from __future__ import annotations

import re

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
    with pytest.raises(TypeError, match=r"inputs is a .* array") as refused:
        xpnn.Dense(2, 3, backend="numpy").forward(foreign)
    advised = re.search(r"create it with backend='([\w:]+)'", str(refused.value))
    assert advised, refused.value
    assert xpnn.get_backend(advised[1]).name == xpnn.get_backend(backend).name  # it exists


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


# -- backward takes its gradient as forward takes its inputs --------------------------------------

RNG = np.random.default_rng(7)
INPUTS = RNG.standard_normal((4, 3))  # 4 samples, 3 features
LABELS = np.array([0, 2, 1, 2])
PROBABILITIES = np.exp(INPUTS) / np.exp(INPUTS).sum(axis=1, keepdims=True)


def _layer(make):
    """A layer after a forward pass of ``INPUTS``; backward takes dvalues alone."""

    def build(backend):
        layer = make(backend)
        layer.forward(INPUTS, training=True)
        return layer, layer.backward, RNG.standard_normal(tuple(layer.output.shape))

    return build


def _loss(make, y_true, y_pred=PROBABILITIES, forward=False):
    """A loss whose backward takes dvalues (the predictions) and ``y_true``."""

    def build(backend):
        loss = make(backend=backend)
        if forward:  # the combined softmax and loss: dvalues are its own softmax outputs
            loss.forward(INPUTS, y_true)
        return loss, lambda dvalues: loss.backward(dvalues, y_true), y_pred.copy()

    return build


BACKWARDS = {
    "ReLU": _layer(lambda b: xpnn.ReLU(backend=b)),
    "Softmax": _layer(lambda b: xpnn.Softmax(backend=b)),
    "Sigmoid": _layer(lambda b: xpnn.Sigmoid(backend=b)),
    "Linear": _layer(lambda b: xpnn.Linear(backend=b)),
    "Tanh": _layer(lambda b: xpnn.Tanh(backend=b)),
    "LeakyReLU": _layer(lambda b: xpnn.LeakyReLU(0.1, backend=b)),
    "Dropout": _layer(lambda b: xpnn.Dropout(0.5, backend=b, seed=0)),
    "Dense": _layer(lambda b: xpnn.Dense(3, 2, 0.1, 0.1, 0.1, 0.1, backend=b, seed=0)),
    "CategoricalCrossentropy": _loss(xpnn.CategoricalCrossentropy, LABELS),
    "CategoricalCrossentropy one-hot": _loss(xpnn.CategoricalCrossentropy, np.eye(3)[LABELS]),
    "SoftmaxCategoricalCrossentropy": _loss(
        xpnn.SoftmaxCategoricalCrossentropy, LABELS, forward=True
    ),
    "BinaryCrossentropy": _loss(xpnn.BinaryCrossentropy, (INPUTS > 0).astype(float)),
    "MeanSquaredError": _loss(xpnn.MeanSquaredError, INPUTS),
    "MeanAbsoluteError": _loss(xpnn.MeanAbsoluteError, INPUTS),
}


def _gradients(part):
    """Every gradient the part's backward writes, on the host."""
    names = ("dinputs", "dweights", "dbiases")
    return [
        xpnn.to_numpy(getattr(part, n)).copy() for n in names if getattr(part, n, None) is not None
    ]


@pytest.mark.parametrize("case", BACKWARDS)
def test_backward_moves_and_casts_its_gradient_as_forward_does(backend, case):
    """Host data (a NumPy array on any backend, a list) moves; float64 on a float32 part is
    cast, on the host or the device; the result is the one the device's own array gives."""
    part, backward, dvalues = BACKWARDS[case](backend)
    be = part.backend
    assert be.dtype_name == "float32"
    backward(be.asarray(dvalues))  # the part's own array, in its own dtype: the reference
    expected = _gradients(part)
    assert expected
    device_float64 = be.asarray(dvalues, dtype=be.xp.float64)
    for given in (dvalues, dvalues.tolist(), dvalues.astype(np.float32), device_float64):
        part.dinputs = None
        dinputs = backward(given)
        assert_on_backend(dinputs, be)
        assert dinputs.dtype == be.dtype, f"{type(given).__name__} gave {dinputs.dtype}"
        for got, want in zip(_gradients(part), expected, strict=True):
            np.testing.assert_array_equal(got, want)


def _foreign(backend):
    """A device array that is not the backend's own: refused, never copied."""
    if backend == "strict":
        return _CudaArray()
    return xpnn.get_backend("strict").zeros((4, 3))


@pytest.mark.parametrize("case", BACKWARDS)
def test_backward_refuses_gradients_that_do_not_fit(backend, case):
    """A gradient shaped unlike the output, of another device, or not of numbers: an error
    naming dvalues, before any gradient changes."""
    part, backward, dvalues = BACKWARDS[case](backend)
    backward(part.backend.asarray(dvalues))
    before = _gradients(part)
    n, k = dvalues.shape
    wrong = [
        (np.ones((n, k + 1)), ValueError, r"dvalues has shape \(4, \d\)|y_true has shape"),
        (np.ones((n + 1, k)), ValueError, r"dvalues has shape \(5, \d\)|y_true.* has shape"),
        (np.ones((1, k)), ValueError, r"dvalues has shape \(1, \d\)|y_true.* has shape"),
        (np.ones(k), ValueError, r"dvalues (has shape|must be 2-D)"),
        (1.0, ValueError, r"dvalues (has shape|must be 2-D)"),
        (dvalues + 1j, TypeError, "dvalues must hold real numbers; got dtype complex128"),
        (dvalues.astype(str), TypeError, "dvalues must hold real numbers; got dtype <U"),
        (dvalues > 0, TypeError, "dvalues must hold real numbers; got dtype bool"),
        (None, TypeError, "dvalues must hold real numbers; got dtype object"),
        ([[1.0, 2.0], [3.0]], TypeError, "dvalues must be an array of real numbers; got list"),
        (np.ma.masked_array(dvalues), TypeError, "dvalues is a masked array"),
        (_foreign(part.backend.name), TypeError, r"dvalues is a .* array on device"),
    ]
    if case in ("CategoricalCrossentropy", "SoftmaxCategoricalCrossentropy"):
        del wrong[0]  # class indices fit any number of classes above the largest index
    for given, error, message in wrong:
        with pytest.raises(error, match=message):
            backward(given)
        for got, want in zip(_gradients(part), before, strict=True):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("case", list(BACKWARDS)[:8])  # the layers; losses keep no forward state
def test_backward_before_forward_is_refused(backend, case):
    part, _, dvalues = BACKWARDS[case](backend)
    fresh = type(part)(**{**part.config(), "backend": part.backend})
    with pytest.raises(RuntimeError, match=r"backward\(\) before forward\(\)"):
        fresh.backward(dvalues)


@pytest.mark.parametrize(
    ("inputs", "error", "message"),
    [
        (
            np.ones((4, 2)),
            ValueError,
            r"inputs must have shape \(samples, 3\) for Dense\(n_inputs=3, n_neurons=2[^)]*\)",
        ),
        (np.ones(3), ValueError, r"inputs must have shape \(samples, 3\).*got \(3,\)"),
        (INPUTS + 1j, TypeError, "inputs must hold real numbers; got dtype complex128"),
        (INPUTS.astype(str), TypeError, "inputs must hold real numbers; got dtype <U"),
        ([[1.0, 2.0, 3.0], [4.0]], TypeError, "inputs must be an array of real numbers"),
    ],
    ids=["too narrow", "1-D", "complex", "text", "ragged"],
)
def test_forward_refuses_inputs_that_do_not_fit(backend, inputs, error, message):
    """What NumPy would refuse deep inside (or cast into garbage) is refused by name."""
    layer = xpnn.Dense(3, 2, backend=backend, seed=0)
    with pytest.raises(error, match=message):
        layer.forward(inputs)
    assert not hasattr(layer, "output")  # nothing changed
    with pytest.raises(ValueError, match=r"inputs must be 2-D \(samples, classes\)"):
        xpnn.Softmax(backend=backend).forward(np.ones(3))


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ([0, 2, 1], r"y_true \(class indices\) has shape \(3,\) but y_pred\[:, 0\] has .*\(4,\)"),
        ([0, 2, 1, 3], r"y_true holds class indices in \[0, 3\] but the predictions have 3"),
        ([0, -1, 1, 2], r"y_true holds class indices in \[-1, 2\]"),
        ([0, 1.5, 1, 2], "y_true holds class indices, which must be whole numbers"),
        (np.eye(4)[[0, 1, 2, 3]], r"y_true has shape \(4, 4\) but y_pred has shape \(4, 3\)"),
        (["a", "b", "c", "d"], "y_true must hold real numbers"),
    ],
    ids=["short", "too high", "negative", "fraction", "one-hot too wide", "text"],
)
@pytest.mark.parametrize(
    "loss", [xpnn.CategoricalCrossentropy, xpnn.SoftmaxCategoricalCrossentropy]
)
@pytest.mark.parametrize("kind", [list, np.asarray])
def test_crossentropy_refuses_labels_that_do_not_fit(backend, loss, kind, labels, message):
    """Host labels (a list, a NumPy array: the numpy backend's own) are checked before they
    move (a GPU wraps an index out of range, NumPy takes -1 as the last class, and the compiled
    NumPy pass would read past a short label array)."""
    labels = kind(labels)
    part = loss(backend=backend)
    y_pred = part.backend.asarray(PROBABILITIES)
    if loss is xpnn.SoftmaxCategoricalCrossentropy:
        message = message.replace("y_pred", "inputs")
    with pytest.raises((ValueError, TypeError), match=message):
        part.forward(y_pred, labels)
    with pytest.raises(
        (ValueError, TypeError),
        match=message.replace("y_pred", "dvalues").replace("inputs", "dvalues"),
    ):
        part.backward(y_pred, labels)
