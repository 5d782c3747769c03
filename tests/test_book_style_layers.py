"""A layer of the user's written as the book writes one: ``backward(self, dvalues)`` with no
``need_dinputs``, and gradients bound anew (``self.dscale = ...``) rather than written into
the arrays the model gave it. Inside a Model it trains exactly as one that writes in place."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import spiral

import xpnn


class Scale(xpnn.Layer):
    """``inputs * scale``, one learned factor per feature; the book's style."""

    parameter_names = (("scale", "scale", "dscale"),)

    def __init__(self, n_features, *, backend="numpy", dtype=None):
        super().__init__(backend=backend, dtype=dtype)
        self.n_features = n_features
        self.build(self.backend, np.random.default_rng(0))

    @classmethod
    def parameter_shapes(cls, **settings):
        return {"scale": (1, settings["n_features"])}

    @classmethod
    def widths(cls, **settings):
        return settings["n_features"], settings["n_features"]

    def build(self, backend, rng):
        self.backend = backend
        self.scale = backend.asarray(np.full((1, self.n_features), 1.5))
        self.dscale = backend.zeros((1, self.n_features))

    def forward(self, inputs, training=False):
        self.inputs = self._inputs(inputs)
        self.output = self.inputs * self.scale
        return self.output

    def backward(self, dvalues):
        xp = self.backend.xp
        self.dscale = xp.sum(dvalues * self.inputs, axis=0, keepdims=True)  # bound anew
        self.dinputs = dvalues * self.scale
        return self.dinputs


class InPlaceScale(Scale):
    """The same layer as xpnn's own layers write it: into the given gradient array."""

    def backward(self, dvalues, *, need_dinputs=True):
        xp = self.backend.xp
        self.dscale[...] = xp.sum(dvalues * self.inputs, axis=0, keepdims=True)
        self.dinputs = dvalues * self.scale if need_dinputs else None
        return self.dinputs


class Silent(Scale):
    """The book's very style: ``forward(self, inputs, training)`` without a default, and
    neither pass returning anything (the model reads ``output`` and ``dinputs``)."""

    def forward(self, inputs, training):
        super().forward(inputs)

    def backward(self, dvalues):
        super().backward(dvalues)


class Unset(Scale):
    def forward(self, inputs, training):
        self.inputs = inputs  # and no output


class WrongShape(Scale):
    def backward(self, dvalues):
        super().backward(dvalues)
        self.dscale = self.backend.xp.reshape(self.dscale, (-1,))  # (n,) where (1, n) is due
        return self.dinputs


def trained(backend, cls, first: bool):
    X, y = spiral(60, 3, seed=4)
    model = xpnn.Model(backend=backend, seed=3)
    if first:
        model.add(cls(2))
    model.add(xpnn.Dense(2, 16))
    model.add(xpnn.ReLU())
    if not first:
        model.add(cls(16))
    model.add(xpnn.Dense(16, 3))
    model.add(xpnn.Softmax())
    model.set(
        loss=xpnn.CategoricalCrossentropy(),
        optimizer=xpnn.Adam(learning_rate=0.05),
        accuracy=xpnn.CategoricalAccuracy(),
    )
    model.finalize()
    model.train(X, y, epochs=3, batch_size=32, verbose=False)
    return model


@pytest.mark.parametrize("first", [True, False], ids=["first-layer", "inner-layer"])
def test_a_layer_that_binds_new_gradients_trains_as_one_that_writes_in_place(backend, first):
    book = trained(backend, Scale, first)
    own = trained(backend, InPlaceScale, first)
    index = 0 if first else 2
    start = np.full((1, 2 if first else 16), 1.5)
    scale = xpnn.to_numpy(book.layers[index].scale)
    assert not np.array_equal(scale, start)  # it trained
    np.testing.assert_array_equal(scale, xpnn.to_numpy(own.layers[index].scale))
    for a, b in zip(book.get_parameters(), own.get_parameters(), strict=True):
        for x, z in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, z)


@pytest.mark.parametrize("first", [True, False], ids=["first-layer", "inner-layer"])
def test_a_layer_whose_passes_return_nothing_trains_as_one_that_returns(backend, first):
    silent, book = trained(backend, Silent, first), trained(backend, Scale, first)
    for a, b in zip(silent.get_parameters(), book.get_parameters(), strict=True):
        for x, z in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, z)
    xpnn.check_gradients(Silent(3, backend=backend), np.linspace(-1, 1, 6).reshape(2, 3))


def test_a_pass_that_sets_nothing_is_named(backend):
    with pytest.raises(TypeError, match=r"Unset.forward returned nothing and set no output"):
        trained(backend, Unset, first=False)
    with pytest.raises(TypeError, match=r"Unset.forward returned nothing and set no output"):
        xpnn.check_gradients(Unset(3, backend=backend), np.ones((2, 3)))


def test_a_gradient_of_another_shape_is_named(backend):
    with pytest.raises(ValueError, match=r"WrongShape.backward set dscale to an array of shape"):
        trained(backend, WrongShape, first=False)
