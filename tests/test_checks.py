"""Checks on what enters a model: parts shared between models.

Each refusal names the argument and comes before anything changes.
"""

from __future__ import annotations

import gc

import numpy as np
import pytest
from helpers import seed_model, spiral

import xpnn

X_GOOD, Y_GOOD = spiral(20, 3)  # 60 samples, 2 features, 3 classes


def _parameters(model):
    return [a.copy() for pair in model.get_parameters() for a in pair]


def _assert_unchanged(model, before, iterations=0):
    for a, b in zip(before, _parameters(model)):
        np.testing.assert_array_equal(a, b)
    assert model.optimizer is None or model.optimizer.iterations == iterations


def _model(
    backend,
    output=xpnn.Softmax,
    loss=xpnn.CategoricalCrossentropy,
    accuracy=None,
    optimizer=None,
    outputs=3,
    dtype="float32",
    finalize=True,
):
    """2-8-outputs, ReLU inside, ``output`` last (None: the Dense layer is the last)."""
    model = xpnn.Model(backend=backend, seed=0, dtype=dtype)
    model.add(xpnn.Dense(2, 8))
    model.add(xpnn.ReLU())
    model.add(xpnn.Dense(8, outputs))
    if output is not None:
        model.add(output())
    model.set(loss=loss(), optimizer=optimizer or xpnn.SGD(0.1), accuracy=accuracy)
    if finalize:
        model.finalize()
    return model


# -- a part belongs to one model ----------------------------------------------------------------


def test_a_layer_in_one_model_is_refused_by_another(backend):
    a = _model(backend)
    weights = a.layers[0].weights
    before = _parameters(a)
    b = xpnn.Model(backend="numpy", seed=1, dtype="float64")
    with pytest.raises(ValueError, match=r"layer: this Dense\(2, 8\) already belongs to another"):
        b.add(a.layers[0])
    assert b.layers == []
    # Put in through the list itself: finalize() refuses it too.
    b.layers.append(a.layers[0])
    b.set(loss=xpnn.MeanSquaredError())
    with pytest.raises(ValueError, match=r"layer 0: this Dense\(2, 8\) already belongs"):
        b.finalize()
    assert a.layers[0].weights is weights and a.layers[0].backend is a.backend
    _assert_unchanged(a, before)


@pytest.mark.parametrize("part", ["loss", "optimizer", "accuracy"])
def test_loss_optimizer_and_metric_belong_to_one_model(part):
    a = seed_model("numpy")
    b = xpnn.Model(seed=1)
    with pytest.raises(ValueError, match=f"{part}: this .* already belongs to another model"):
        b.set(**{part: getattr(a, part)})
    assert getattr(b, part) is None
    # Once a gives it up, b may take it.
    old = getattr(a, part)
    replacement = {
        "loss": xpnn.CategoricalCrossentropy(),
        "optimizer": xpnn.SGD(),
        "accuracy": xpnn.CategoricalAccuracy(),
    }[part]
    a.set(**{part: replacement})
    b.set(**{part: old})
    assert getattr(b, part) is old
    a.set(**{part: replacement})  # setting the same part again is fine


def test_a_part_is_free_once_its_model_is_gone():
    a = seed_model("numpy")
    layer, optimizer = a.layers[0], a.optimizer
    del a
    gc.collect()
    b = xpnn.Model(seed=1)
    b.add(layer)
    b.set(optimizer=optimizer)


def test_a_layer_twice_in_one_model_is_refused():
    model = xpnn.Model(seed=0)
    relu = xpnn.ReLU()
    model.add(xpnn.Dense(2, 2))
    model.add(relu)
    with pytest.raises(ValueError, match=r"layer: this ReLU\(\) is already in the model"):
        model.add(relu)
    model.layers.append(relu)  # through the list
    model.set(loss=xpnn.MeanSquaredError())
    with pytest.raises(ValueError, match=r"layer 2: this ReLU\(\) is in the model twice"):
        model.finalize()
