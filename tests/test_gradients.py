"""Every backward pass against central differences (``xpnn.check_gradients``), in float64, on
every backend: each layer, activation and loss of tests/parts.py's ``GRADIENTS`` table (so a
part added to the registry and the table is checked here without a line more), and the cases
beyond the table (regularization penalties, the combined softmax and loss, loss values)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_on_backend
from parts import GRADIENTS

import xpnn

RTOL, ATOL = 1e-6, 1e-8


@pytest.fixture
def rng():
    return np.random.default_rng(42)


def _inputs(rng, entry):
    """The inputs a table entry asks for (a loss's predictions)."""
    shape = entry.inputs
    if entry.values == "normal":
        return rng.standard_normal(shape)
    if entry.values == "away from 0":  # a kink at 0 (ReLU's), where the derivative jumps
        return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.1, 2.0, shape)
    if entry.values == "in (0, 1)":
        return rng.uniform(0.05, 0.95, shape)
    assert entry.values == "probabilities", entry.values
    return _probabilities(rng, *shape)


def _table_targets(rng, entry, predictions, one_hot):
    """A loss's targets as the entry asks: class labels (or their one-hot rows), 0 or 1 per
    output, or real values kept away from the predictions (the absolute error's kink)."""
    shape = predictions.shape
    if entry.targets == "classes":
        labels = rng.integers(0, shape[1], size=shape[0])
        return np.eye(shape[1])[labels] if one_hot else labels
    if entry.targets == "binary":
        return rng.integers(0, 2, size=shape).astype(np.float64)
    assert entry.targets == "real", entry.targets
    return predictions + rng.choice([-1.0, 1.0], shape) * rng.uniform(0.1, 1.0, shape)


#: Each table entry, and both forms of class targets for the losses that take them.
CASES = [
    pytest.param(name, one_hot, id=f"{name}-one-hot" if one_hot else name)
    for name, entry in GRADIENTS.items()
    for one_hot in ((False, True) if entry.targets == "classes" else (False,))
]


@pytest.mark.parametrize(("name", "one_hot"), CASES)
def test_gradients(backend, rng, name, one_hot):
    """Every layer, activation and loss of tests/parts.py's table: its passes stay on the
    backend, and ``check_gradients`` agrees with them. A layer's parameters are set to
    random values first (away from 0, where L1's derivative jumps; not their first values,
    zero biases or unit scales, which can hide a wrong term)."""
    entry = GRADIENTS[name]
    be = xpnn.get_backend(backend, "float64")
    part = entry.make(be)
    inputs = _inputs(rng, entry)
    if entry.targets is None:
        for _, parameter, _ in part.parameter_names:
            shape = tuple(getattr(part, parameter).shape)
            values = rng.choice([-1.0, 1.0], shape) * rng.uniform(0.1, 1.0, shape)
            setattr(part, parameter, be.asarray(values))
        assert_on_backend(part.forward(be.asarray(inputs), training=True), be)
        upstream = rng.standard_normal(tuple(part.output.shape))
        assert_on_backend(part.backward(be.asarray(upstream)), be)
        for _, _, gradient in part.parameter_names:
            assert_on_backend(getattr(part, gradient), be)
        xpnn.check_gradients(part, inputs)
        return
    targets = _table_targets(rng, entry, inputs, one_hot)
    if isinstance(part, xpnn.SoftmaxCategoricalCrossentropy):
        assert_on_backend(part.forward(be.asarray(inputs), targets), be)
        part.backward(part.output, targets)
    else:
        assert_on_backend(part.calculate(be.asarray(inputs), targets), be)
        part.backward(be.asarray(inputs), targets)
    assert_on_backend(part.dinputs, be)
    xpnn.check_gradients(part, inputs, targets=targets)


def _probabilities(rng, samples, classes):
    logits = rng.standard_normal((samples, classes))
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("one_hot", [False, True], ids=["sparse", "one-hot"])
def test_crossentropy_value(backend, rng, one_hot):
    """The mean of -log(the probability of the right class), on the device."""
    be = xpnn.get_backend(backend, "float64")
    loss = xpnn.CategoricalCrossentropy(backend=be)
    y_pred = _probabilities(rng, 7, 3)
    labels = rng.integers(0, 3, size=7)
    y_true = np.eye(3)[labels] if one_hot else labels

    mean_loss = loss.calculate(be.asarray(y_pred), y_true)
    assert_on_backend(mean_loss, be)
    expected_loss = -np.mean(np.log(y_pred[np.arange(7), labels]))
    np.testing.assert_allclose(float(xpnn.to_numpy(mean_loss)), expected_loss, RTOL)


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
