"""Every backward pass against central differences (``xpnn.check_gradients``), in float64, on
every backend."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_on_backend

import xpnn

RTOL, ATOL = 1e-6, 1e-8


@pytest.fixture
def rng():
    return np.random.default_rng(42)


def test_dense_gradients(backend, rng):
    be = xpnn.get_backend(backend, "float64")
    layer = xpnn.Dense(4, 3, backend=be, seed=1)
    layer.biases[...] = be.asarray(rng.standard_normal((1, 3)))
    inputs = rng.standard_normal((5, 4))

    layer.forward(be.asarray(inputs))
    layer.backward(be.asarray(rng.standard_normal((5, 3))))
    for array in (layer.dweights, layer.dbiases, layer.dinputs):
        assert_on_backend(array, be)
    xpnn.check_gradients(layer, inputs)


ACTIVATIONS = {
    "ReLU": xpnn.ReLU,
    "Softmax": xpnn.Softmax,
    "Sigmoid": xpnn.Sigmoid,
    "Linear": xpnn.Linear,
    "Tanh": xpnn.Tanh,
    "LeakyReLU": lambda backend: xpnn.LeakyReLU(0.1, backend=backend),
    "Dropout": lambda backend: xpnn.Dropout(0.3, backend=backend, seed=4),
}


@pytest.mark.parametrize("activation", ACTIVATIONS.values(), ids=ACTIVATIONS.keys())
def test_activation_gradients(backend, rng, activation):
    be = xpnn.get_backend(backend, "float64")
    layer = activation(backend=be)
    # Keep ReLU inputs away from the kink at 0, where the derivative is undefined.
    inputs = rng.standard_normal((6, 4))
    inputs = np.where(np.abs(inputs) < 1e-3, 0.5, inputs)

    output = layer.forward(be.asarray(inputs))
    dinputs = layer.backward(be.asarray(rng.standard_normal((6, 4))))
    assert_on_backend(output, be)
    assert_on_backend(dinputs, be)
    xpnn.check_gradients(layer, inputs)


def _probabilities(rng, samples, classes):
    logits = rng.standard_normal((samples, classes))
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("one_hot", [False, True], ids=["sparse", "one-hot"])
def test_crossentropy_gradient(backend, rng, one_hot):
    be = xpnn.get_backend(backend, "float64")
    loss = xpnn.CategoricalCrossentropy(backend=be)
    y_pred = _probabilities(rng, 7, 3)
    labels = rng.integers(0, 3, size=7)
    y_true = np.eye(3)[labels] if one_hot else labels

    mean_loss = loss.calculate(be.asarray(y_pred), y_true)
    assert_on_backend(mean_loss, be)
    expected_loss = -np.mean(np.log(y_pred[np.arange(7), labels]))
    np.testing.assert_allclose(float(xpnn.to_numpy(mean_loss)), expected_loss, RTOL)

    assert_on_backend(loss.backward(be.asarray(y_pred), y_true), be)
    xpnn.check_gradients(loss, y_pred, targets=y_true)


def test_crossentropy_clips_predictions(backend):
    be = xpnn.get_backend(backend, "float64")
    loss = xpnn.CategoricalCrossentropy(backend=be)
    sample_losses = loss.forward(be.asarray([[0.0, 1.0], [1.0, 0.0]]), np.array([0, 0]))
    np.testing.assert_allclose(xpnn.to_numpy(sample_losses), [-np.log(1e-7), -np.log(1 - 1e-7)])


@pytest.mark.parametrize("one_hot", [False, True], ids=["sparse", "one-hot"])
def test_combined_gradient_equals_softmax_after_crossentropy(backend, rng, one_hot):
    be = xpnn.get_backend(backend, "float64")
    logits = be.asarray(rng.standard_normal((8, 4)))
    labels = rng.integers(0, 4, size=8)
    y_true = np.eye(4)[labels] if one_hot else labels

    softmax, crossentropy = xpnn.Softmax(backend=be), xpnn.CategoricalCrossentropy(backend=be)
    probabilities = softmax.forward(logits)
    softmax.backward(crossentropy.backward(probabilities, y_true))

    combined = xpnn.SoftmaxCategoricalCrossentropy(backend=be)
    combined_loss = combined.forward(logits, y_true)
    combined.backward(combined.output, y_true)

    assert_on_backend(combined.dinputs, be)
    np.testing.assert_allclose(
        xpnn.to_numpy(combined.dinputs), xpnn.to_numpy(softmax.dinputs), RTOL, ATOL
    )
    np.testing.assert_allclose(
        float(xpnn.to_numpy(combined_loss)),
        float(xpnn.to_numpy(crossentropy.calculate(probabilities, y_true))),
    )
    xpnn.check_gradients(combined, logits, targets=y_true)


def test_regularized_dense_gradients(backend, rng):
    """dweights and dbiases include the L1 and L2 penalties' gradients."""
    be = xpnn.get_backend(backend, "float64")
    layer = xpnn.Dense(3, 4, 0.3, 0.2, 0.1, 0.05, backend=be, seed=2)
    start_weights = rng.standard_normal((3, 4))
    start_biases = rng.standard_normal((1, 4))
    layer.weights, layer.biases = be.asarray(start_weights), be.asarray(start_biases)

    expected_penalty = 0.3 * np.abs(start_weights).sum() + 0.2 * (start_weights**2).sum()
    expected_penalty += 0.1 * np.abs(start_biases).sum() + 0.05 * (start_biases**2).sum()
    assert_on_backend(layer.regularization_loss(), be)
    np.testing.assert_allclose(float(xpnn.to_numpy(layer.regularization_loss())), expected_penalty)
    xpnn.check_gradients(layer, rng.standard_normal((5, 3)))


def test_l1_gradient_is_one_at_zero(backend):
    """As the book: the L1 derivative is 1 where a weight is exactly 0, -1 where negative."""
    be = xpnn.get_backend(backend, "float64")
    layer = xpnn.Dense(1, 3, weight_regularizer_l1=0.5, backend=be)
    layer.weights = be.asarray([[0.0, -2.0, 3.0]])
    layer.forward(be.asarray([[0.0]]))
    layer.backward(be.asarray([[0.0, 0.0, 0.0]]))
    np.testing.assert_array_equal(xpnn.to_numpy(layer.dweights), [[0.5, -0.5, 0.5]])


def _targets(rng, kind, shape):
    if kind == "binary":
        return rng.integers(0, 2, size=shape).astype(np.float64)
    return rng.standard_normal(shape)


LOSSES = {
    "BinaryCrossentropy": (xpnn.BinaryCrossentropy, "binary"),
    "MeanSquaredError": (xpnn.MeanSquaredError, "real"),
    "MeanAbsoluteError": (xpnn.MeanAbsoluteError, "real"),
}


@pytest.mark.parametrize(("loss_class", "kind"), LOSSES.values(), ids=LOSSES.keys())
def test_loss_gradients(backend, rng, loss_class, kind):
    be = xpnn.get_backend(backend, "float64")
    loss = loss_class(backend=be)
    y_true = _targets(rng, kind, (6, 2))
    # Probabilities for cross-entropy; elsewhere values kept away from the targets, where
    # the absolute error has its kink.
    y_pred = (
        rng.uniform(0.05, 0.95, (6, 2))
        if kind == "binary"
        else y_true + rng.choice([-1, 1], (6, 2)) * rng.uniform(0.1, 1, (6, 2))
    )

    assert_on_backend(loss.backward(be.asarray(y_pred), y_true), be)
    xpnn.check_gradients(loss, y_pred, targets=y_true)


def test_loss_values_follow_the_book(backend):
    be = xpnn.get_backend(backend, "float64")
    y_pred = np.array([[0.9, 0.2], [0.0, 1.0]])
    y_true = np.array([[1.0, 0.0], [1.0, 1.0]])
    clipped = np.clip(y_pred, 1e-7, 1 - 1e-7)
    bce = -(y_true * np.log(clipped) + (1 - y_true) * np.log(1 - clipped)).mean(axis=1)
    expected = {
        xpnn.BinaryCrossentropy: bce,
        xpnn.MeanSquaredError: ((y_true - y_pred) ** 2).mean(axis=1),
        xpnn.MeanAbsoluteError: np.abs(y_true - y_pred).mean(axis=1),
    }
    for loss_class, values in expected.items():
        sample_losses = loss_class(backend=be).forward(be.asarray(y_pred), y_true)
        assert_on_backend(sample_losses, be)
        np.testing.assert_allclose(xpnn.to_numpy(sample_losses), values, rtol=1e-12)


def test_losses_refuse_targets_of_another_shape(backend):
    loss = xpnn.MeanSquaredError(backend=backend)
    with pytest.raises(ValueError, match=r"y_true has shape \(4,\)"):
        loss.forward(loss.backend.zeros((4, 1)), np.zeros(4))
