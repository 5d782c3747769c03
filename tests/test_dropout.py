"""Dropout: the rate of its mask, its scaling, inference, and a backward through the same mask."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_on_backend

import xpnn


@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_mask_rate_and_scale(backend, rate):
    layer = xpnn.Dropout(rate, backend=backend, seed=0)
    be = layer.backend
    inputs = np.ones((400, 250))
    output = layer.forward(inputs, training=True)
    assert_on_backend(output, be)
    assert_on_backend(layer.binary_mask, be)
    assert layer.binary_mask.dtype == be.dtype
    values = xpnn.to_numpy(output)
    dropped = np.mean(values == 0)
    sigma = np.sqrt(rate * (1 - rate) / values.size)
    assert abs(dropped - rate) < 5 * sigma  # 100,000 draws: a 5-sigma band
    np.testing.assert_allclose(values[values != 0], 1 / (1 - rate), rtol=1e-6)
    # Scaled so the expected output equals the input.
    assert abs(values.mean() - 1) < 5 * sigma / (1 - rate)


def test_inference_passes_inputs_through(backend):
    layer = xpnn.Dropout(0.5, backend=backend, seed=0)
    inputs = np.random.default_rng(0).standard_normal((20, 30))
    np.testing.assert_array_equal(
        xpnn.to_numpy(layer.forward(inputs, training=False)), inputs.astype(np.float32)
    )
    upstream = layer.backend.asarray(np.ones((20, 30)))
    np.testing.assert_array_equal(xpnn.to_numpy(layer.backward(upstream)), 1)


def test_backward_uses_the_forward_mask(backend):
    layer = xpnn.Dropout(0.3, backend=backend, dtype="float64", seed=1)
    rng = np.random.default_rng(1)
    inputs = rng.uniform(1, 2, (50, 40))
    upstream = rng.standard_normal((50, 40))
    output = xpnn.to_numpy(layer.forward(inputs, training=True))
    dinputs = xpnn.to_numpy(layer.backward(layer.backend.asarray(upstream)))
    kept = output != 0
    np.testing.assert_array_equal(dinputs == 0, ~kept)
    np.testing.assert_allclose(dinputs[kept], upstream[kept] / 0.7, rtol=1e-12)
    # The gradient is the forward map's own derivative: output / inputs.
    np.testing.assert_allclose(dinputs, upstream * output / inputs, rtol=1e-12)


def test_masks_are_seeded_and_fresh_each_step(backend):
    first = xpnn.Dropout(0.5, backend=backend, seed=3)
    second = xpnn.Dropout(0.5, backend=backend, seed=3)
    inputs = np.ones((30, 30))
    a = xpnn.to_numpy(first.forward(inputs))
    np.testing.assert_array_equal(a, xpnn.to_numpy(second.forward(inputs)))
    assert not np.array_equal(a, xpnn.to_numpy(first.forward(inputs)))


def test_model_drops_in_training_only(backend):
    model = xpnn.Model(backend=backend, seed=0, dtype="float64")
    model.add(xpnn.Dense(4, 16))
    model.add(xpnn.Dropout(0.5))
    model.add(xpnn.Dense(16, 2))
    model.add(xpnn.Softmax())
    model.set(loss=xpnn.CategoricalCrossentropy(), optimizer=xpnn.Adam())
    model.finalize()
    X = np.random.default_rng(0).standard_normal((8, 4))
    np.testing.assert_array_equal(xpnn.to_numpy(model.predict(X)), xpnn.to_numpy(model.predict(X)))
    a = xpnn.to_numpy(model.forward(model.backend.asarray(X), training=True))
    b = xpnn.to_numpy(model.forward(model.backend.asarray(X), training=True))
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("rate", [-0.1, 1.0, 2])
def test_rate_out_of_range_is_refused(rate):
    with pytest.raises(ValueError, match="rate"):
        xpnn.Dropout(rate)
