"""The registry of parts (``xpnn.parts``): it holds every part xpnn exports, the tests' tables
(tests/parts.py) hold an entry for each, ``xpnn.register`` admits a user's part to saving and
loading, and every part's repr shows its whole configuration."""

from __future__ import annotations

import inspect
import math
import sys
import threading

import numpy as np
import pytest
from helpers import spiral
from parts import GRADIENTS, OPTIMIZERS, own

import xpnn
from xpnn import description, parts

# -- the registry and the tests' tables -----------------------------------------------------------


def exported_parts() -> dict[str, type]:
    """The classes xpnn exports that are parts (a layer, loss, optimizer or metric, not a base)."""
    found = (getattr(xpnn, name) for name in xpnn.__all__)
    return {cls.__name__: cls for cls in found if parts.kind_of(cls) is not None}


def test_every_exported_part_is_registered_and_every_registered_part_exported():
    registered = {cls.__name__: cls for classes in parts.OWN.values() for cls in classes}
    registered |= {cls.__name__: cls for cls in parts.COMBINED}
    assert exported_parts() == registered
    for kind, classes in parts.OWN.items():
        assert all(parts.kind_of(cls) == kind for cls in classes), kind


def test_a_file_may_name_exactly_the_registered_parts():
    """The save whitelist is the registry: each kind's own classes (the combined loss not)."""
    for kind, kinds in [
        ("layer", description.LAYERS),
        ("loss", description.LOSSES),
        ("optimizer", description.OPTIMIZERS),
        ("metric", description.METRICS),
    ]:
        assert dict(kinds) == own(kind)


def test_every_layer_and_loss_has_a_gradient_check_entry():
    """What a gradient check needs of each layer, activation and loss, complete and valid."""
    needed = {**own("layer"), **own("loss"), **{c.__name__: c for c in parts.COMBINED}}
    assert set(GRADIENTS) == set(needed)
    be = xpnn.get_backend("numpy", "float64")
    for name, entry in GRADIENTS.items():
        part = entry.make(be)
        assert type(part) is needed[name]
        assert len(entry.inputs) == 2 and all(n > 0 for n in entry.inputs), name
        assert entry.values in {"normal", "away from 0", "in (0, 1)", "probabilities"}, name
        is_loss = isinstance(part, xpnn.Loss)
        assert entry.targets in ({"classes", "binary", "real"} if is_loss else {None}), name


def test_every_optimizer_has_an_entry_its_update_takes():
    """Trained with in replicas, save and load, threads; its update's arrays and scalars as its
    reference update takes them."""
    assert set(OPTIMIZERS) == set(own("optimizer"))
    for name, rule in OPTIMIZERS.items():
        optimizer = rule.make()
        assert type(optimizer).__name__ == name
        changed = {k: v for k, v in optimizer.config().items() if v != defaults(type(optimizer))[k]}
        assert changed, f"{name}: every setting at its default tests nothing of saving it"
        reference = sys.modules[type(optimizer).__module__].reference_update
        signature = inspect.signature(reference).parameters
        keywords = [p for p, v in signature.items() if v.kind is inspect.Parameter.KEYWORD_ONLY]
        passes_on = [p for p, v in signature.items() if v.kind is inspect.Parameter.VAR_KEYWORD]
        if passes_on:  # the rest go to the rule it builds on (AdamW's to Adam's), which names them
            assert set(keywords) < set(rule.scalars), name
        else:
            assert set(keywords) == set(rule.scalars), name
        states = [
            p for p in signature if p not in {"backend", "scratch", "grad", *keywords, *passes_on}
        ]
        assert len(states) == rule.arrays, name


def defaults(cls: type) -> dict:
    return {
        name: p.default
        for name, p in inspect.signature(cls.__init__).parameters.items()
        if name in cls.arguments()
    }


# -- repr: the whole configuration ----------------------------------------------------------------


def test_repr_shows_every_constructor_setting():
    assert repr(xpnn.Adam()) == (
        "Adam(learning_rate=0.001, decay=0.0, epsilon=1e-07, beta_1=0.9, beta_2=0.999)"
    )
    assert repr(xpnn.CategoricalAccuracy(binary=True)) == "CategoricalAccuracy(binary=True)"
    be = xpnn.get_backend("numpy", "float64")
    made = [entry.make(be) for entry in GRADIENTS.values()]
    made += [rule.make() for rule in OPTIMIZERS.values()]
    made += [cls() for cls in own("metric").values()]
    for part in made:
        settings = part.config()
        shown = ", ".join(f"{name}={value!r}" for name, value in settings.items())
        assert repr(part) == f"{type(part).__name__}({shown})"
        assert len(settings) == len(type(part).arguments())


def test_repr_of_a_users_part_shows_its_settings():
    assert repr(Softplus(beta=2.0, mode="fast")) == "Softplus(beta=2.0, mode='fast')"


# -- a user's parts ------------------------------------------------------------------------------


class Softplus(xpnn.Layer):
    """``log(1 + exp(beta * x)) / beta``: a smooth ReLU, with a string setting as well."""

    def __init__(self, beta=1.0, mode="exact", *, backend="numpy", dtype=None):
        super().__init__(backend=backend, dtype=dtype)
        self.beta, self.mode = beta, mode

    def forward(self, inputs, training=False):
        xp = self.backend.xp
        self.inputs = self._inputs(inputs)
        self.output = xp.log(1 + xp.exp(self.beta * self.inputs)) / self.beta
        return self.output

    def backward(self, dvalues):
        dvalues = self._gradient(dvalues)
        self.dinputs = dvalues / (1 + self.backend.xp.exp(-self.beta * self.inputs))
        return self.dinputs


class Scale(xpnn.Layer):
    """A learned scale per feature: a layer with a parameter of its own."""

    parameter_names = (("scale", "scale", "dscale"),)

    def __init__(self, n, *, backend="numpy", dtype=None):
        super().__init__(backend=backend, dtype=dtype)
        self.n = n
        self.build(self.backend, np.random.default_rng(0))

    @classmethod
    def parameter_shapes(cls, **settings):
        return {"scale": (1, settings["n"])}

    @classmethod
    def widths(cls, **settings):
        return settings["n"], settings["n"]

    def build(self, backend, rng):
        self.backend = backend
        self.scale = backend.asarray(1 + 0.1 * rng.standard_normal((1, self.n)))
        self.dscale = backend.zeros((1, self.n))

    def forward(self, inputs, training=False):
        self.inputs = self._inputs(inputs)
        self.output = self.inputs * self.scale
        return self.output

    def backward(self, dvalues):
        dvalues = self._gradient(dvalues)
        self.dscale[...] = self.backend.xp.sum(dvalues * self.inputs, axis=0, keepdims=True)
        self.dinputs = dvalues * self.scale
        return self.dinputs


class DampedSGD(xpnn.Optimizer):
    """SGD whose steps are ``damping`` times the plain ones."""

    def __init__(self, learning_rate=0.5, decay=0.0, damping=0.5):
        super().__init__(learning_rate, decay)
        self.damping = damping

    def update(self, layer, prefix, param, grad):
        param -= (self.damping * self.current_learning_rate) * grad


class Crossentropy(xpnn.CategoricalCrossentropy):
    """A loss of the user's (the book's, by another name)."""


class Hits(xpnn.CategoricalAccuracy):
    """A metric of the user's."""


USERS = (Softplus, Scale, DampedSGD, Crossentropy, Hits)


@pytest.fixture
def registered():
    """The user's parts registered for the test, and withdrawn after it."""
    for cls in USERS:
        assert xpnn.register(cls) is cls
    try:
        yield
    finally:
        for cls in USERS:
            xpnn.unregister(cls)


def users_model(backend):
    model = xpnn.Model(backend=backend, seed=4, dtype="float64")
    model.add(xpnn.Dense(2, 16))
    model.add(Softplus(beta=2.0, mode="fast"))
    model.add(Scale(16))
    model.add(xpnn.Dense(16, 3))
    model.add(xpnn.Softmax())
    model.set(loss=Crossentropy(), optimizer=DampedSGD(damping=0.8), accuracy=Hits())
    model.finalize()
    return model


def test_a_users_parts_save_and_load_once_registered(backend, tmp_path, registered):
    X, y = spiral(30, 3)
    model = users_model(backend)
    history = model.train(X, y, epochs=3, batch_size=32, verbose=False)
    assert history["loss"][-1] < history["loss"][0]  # the user's layers and optimizer learn
    path = tmp_path / "users.xpnn"
    model.save(path)
    loaded = xpnn.Model.load(path, backend=backend)
    assert [repr(layer) for layer in loaded.layers] == [repr(layer) for layer in model.layers]
    assert repr(loaded.optimizer) == "DampedSGD(learning_rate=0.5, decay=0.0, damping=0.8)"
    assert (type(loaded.loss), type(loaded.accuracy)) == (Crossentropy, Hits)
    for a, b in zip(loaded.get_parameters(), model.get_parameters(), strict=True):
        for left, right in zip(a, b, strict=True):
            np.testing.assert_array_equal(xpnn.to_numpy(left), xpnn.to_numpy(right))
    np.testing.assert_array_equal(xpnn.to_numpy(loaded.predict(X)), xpnn.to_numpy(model.predict(X)))


def test_an_unregistered_part_is_refused_at_save_and_at_load(tmp_path, registered):
    model = users_model("numpy")
    path = tmp_path / "users.xpnn"
    model.save(path)
    xpnn.unregister(Softplus)
    with pytest.raises(xpnn.XpnnFileError, match=r"'Softplus'.*call xpnn\.register"):
        xpnn.Model.load(path)
    with pytest.raises(TypeError, match=r"Softplus is neither.*xpnn\.register\(Softplus\)"):
        model.save(tmp_path / "again.xpnn")
    assert not (tmp_path / "again.xpnn").exists()
    xpnn.register(Softplus)
    assert type(xpnn.Model.load(path).layers[1]) is Softplus


def test_register_refuses_what_is_not_a_part():
    for thing in (int, Softplus(), "Softplus", xpnn.Layer, xpnn.Optimizer, None):
        with pytest.raises(TypeError, match=r"register takes a class derived from xpnn\.Layer"):
            xpnn.register(thing)


def test_register_refuses_a_name_taken_by_xpnn_or_another_class():
    class Dense(xpnn.Layer):
        pass

    with pytest.raises(ValueError, match=r"Dense is the name of xpnn's own xpnn\.layers\.Dense"):
        xpnn.register(Dense)
    with pytest.raises(ValueError, match="SoftmaxCategoricalCrossentropy is the name"):
        xpnn.register(type("SoftmaxCategoricalCrossentropy", (xpnn.Loss,), {}))
    xpnn.register(Softplus)
    try:
        other = type("Softplus", (xpnn.Layer,), {"__module__": "elsewhere"})
        with pytest.raises(ValueError, match=r"elsewhere\.Softplus: .*for test_parts\.Softplus"):
            xpnn.register(other)
        assert description.LAYERS["Softplus"] is Softplus
        assert xpnn.register(Softplus) is Softplus  # again: no change
        # Defined again in its module (a notebook cell run twice): the new class takes its place.
        again = type("Softplus", (Softplus,), {"__module__": Softplus.__module__})
        again.__qualname__ = Softplus.__qualname__
        xpnn.register(again)
        assert description.LAYERS["Softplus"] is again
        xpnn.unregister(Softplus)  # not the one registered now: a no-op
        assert description.LAYERS["Softplus"] is again
        xpnn.unregister(again)
    finally:
        xpnn.unregister(Softplus)
    assert "Softplus" not in description.LAYERS


def test_register_refuses_a_layer_with_parameters_but_no_shapes():
    class Shapeless(Scale):
        pass

    assert xpnn.register(Shapeless) is Shapeless  # inherits Scale's parameter_shapes
    xpnn.unregister(Shapeless)
    Bare = type("Bare", (xpnn.Layer,), {"parameter_names": Scale.parameter_names})
    with pytest.raises(TypeError, match=r"layer Bare has parameters .* parameter_shapes"):
        xpnn.register(Bare)


def test_settings_a_file_cannot_hold_are_refused_at_save(tmp_path, registered):
    model = users_model("numpy")
    model.layers[1].beta = [2.0]
    with pytest.raises(TypeError, match=r"layer Softplus: beta=\[2.0\] is not a number, string"):
        model.save(tmp_path / "m.xpnn")
    model.layers[1].beta = math.inf
    with pytest.raises(ValueError, match=r"layer Softplus: beta=inf is not finite"):
        model.save(tmp_path / "m.xpnn")
    model.layers[1].beta = 2.0
    del model.layers[1].mode
    with pytest.raises(TypeError, match=r"Softplus: it keeps no attribute for .* argument mode"):
        model.save(tmp_path / "m.xpnn")
    assert not list(tmp_path.iterdir())


def test_registration_from_many_threads_at_once():
    classes = [type(f"Layer{i}", (xpnn.Layer,), {}) for i in range(64)]
    barrier = threading.Barrier(8)

    def register(chunk):
        barrier.wait()
        for cls in chunk:
            xpnn.register(cls)

    threads = [threading.Thread(target=register, args=(classes[i::8],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert {name: description.LAYERS[name] for name in description.LAYERS} == {
            **own("layer"),
            **{cls.__name__: cls for cls in classes},
        }
    finally:
        for cls in classes:
            xpnn.unregister(cls)
    assert dict(description.LAYERS) == own("layer")
