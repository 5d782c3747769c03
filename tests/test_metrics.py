"""Accuracy metrics: categorical, binary and regression."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_on_backend

import xpnn


def test_binary_accuracy_compares_every_output(backend):
    metric = xpnn.CategoricalAccuracy(binary=True, backend=backend)
    be = metric.backend
    sigmoid = xpnn.Sigmoid(backend=be)
    outputs = be.asarray([[0.9, 0.2], [0.4, 0.7], [0.6, 0.51]])
    predictions = sigmoid.predictions(outputs)
    np.testing.assert_array_equal(xpnn.to_numpy(predictions), [[1, 0], [0, 1], [1, 1]])
    value = metric.calculate(predictions, np.array([[1, 0], [1, 1], [1, 0]]))
    assert_on_backend(value, be)
    assert float(xpnn.to_numpy(value)) == pytest.approx(4 / 6)


def test_regression_accuracy_precision(backend):
    metric = xpnn.RegressionAccuracy(backend=backend, dtype="float64")
    y = np.linspace(-1, 1, 101).reshape(-1, 1)
    metric.init(y)
    assert metric.precision == pytest.approx(np.std(y) / 250)
    metric.init(y * 100)  # set once, as the book: later training runs keep it
    assert metric.precision == pytest.approx(np.std(y) / 250)
    be = metric.backend
    close = be.asarray(y + 0.5 * metric.precision)
    far = be.asarray(y + 2 * metric.precision)
    assert float(xpnn.to_numpy(metric.calculate(close, y))) == 1.0
    assert float(xpnn.to_numpy(metric.calculate(far, y))) == 0.0


def test_regression_accuracy_with_a_set_precision(backend):
    metric = xpnn.RegressionAccuracy(0.1, backend=backend)
    metric.init(np.zeros((3, 1)))
    assert metric.precision == 0.1
    value = metric.calculate(metric.backend.asarray([[0.05], [0.2], [-0.09]]), np.zeros((3, 1)))
    assert float(xpnn.to_numpy(value)) == pytest.approx(2 / 3)


def test_metric_arguments_are_checked():
    with pytest.raises(ValueError, match="precision"):
        xpnn.RegressionAccuracy(0)
    with pytest.raises(TypeError, match="binary"):
        xpnn.CategoricalAccuracy(binary="yes")
    with pytest.raises(RuntimeError, match="init"):
        xpnn.RegressionAccuracy().compare(np.zeros(2), np.zeros(2))


@pytest.mark.parametrize(
    ("metric", "predictions", "y"),
    [
        (lambda: xpnn.CategoricalAccuracy(), np.zeros(4, np.int64), np.zeros(3, np.int64)),
        (lambda: xpnn.CategoricalAccuracy(binary=True), np.zeros((4, 1)), np.zeros(4)),
        (lambda: xpnn.RegressionAccuracy(precision=0.1), np.zeros((4, 1)), np.zeros(4)),
    ],
    ids=["categorical", "binary", "regression"],
)
def test_targets_of_another_shape_are_refused_by_name(backend, metric, predictions, y):
    """NumPy would broadcast (4, 1) against (4,) into 16 comparisons, a wrong figure, or fail
    with an error that names neither array."""
    made = metric()
    made.build(xpnn.get_backend(backend))
    predictions = xpnn.get_backend(backend).asarray(predictions, dtype=None)
    with pytest.raises(ValueError, match=r"y has shape \(\d+,\) but the prediction array"):
        made.calculate(predictions, y)


def test_predictions_take_host_outputs_and_refuse_text(backend):
    """``output_layer_activation.predictions`` on a list (outputs copied by hand, say)."""
    be = xpnn.get_backend(backend)
    classes = xpnn.Softmax(backend=be).predictions([[0.1, 0.9], [0.8, 0.2]])
    assert_on_backend(classes, be)
    np.testing.assert_array_equal(xpnn.to_numpy(classes), [1, 0])
    binary = xpnn.Sigmoid(backend=be).predictions([[0.7], [0.2]])
    np.testing.assert_array_equal(xpnn.to_numpy(binary), [[1.0], [0.0]])
    with pytest.raises(TypeError, match="outputs must hold real numbers"):
        xpnn.Softmax(backend=be).predictions([["a", "b"]])
