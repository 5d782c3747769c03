"""xpnn.check_gradients itself: it finds a wrong backward pass and names the array, leaves the
part as it was, and refuses bad arguments by name. (test_gradients.py runs it on every part.)"""

from __future__ import annotations

import re

import numpy as np
import pytest

import xpnn


@pytest.fixture
def rng():
    return np.random.default_rng(7)


class WrongDinputs(xpnn.Dense):
    def backward(self, dvalues, *, need_dinputs=True):
        super().backward(dvalues, need_dinputs=need_dinputs)
        self.dinputs = self.dinputs * 1.001
        return self.dinputs


class WrongDweights(xpnn.Dense):
    def backward(self, dvalues, *, need_dinputs=True):
        super().backward(dvalues, need_dinputs=need_dinputs)
        self.dweights = self.dweights + self.backend.asarray([[0.0, 0.0, 0.0]] * 3 + [[0, 0.01, 0]])
        return self.dinputs


class WrongDbiases(xpnn.Dense):
    def backward(self, dvalues, *, need_dinputs=True):
        super().backward(dvalues, need_dinputs=need_dinputs)
        self.dbiases = -self.dbiases
        return self.dinputs


class Softplus(xpnn.Layer):
    """A user's activation, written against ``xp`` as the book writes its own."""

    def forward(self, inputs, training=False):
        self.inputs = self._inputs(inputs)
        self.output = self.backend.xp.log(1 + self.backend.xp.exp(self.inputs))
        return self.output

    def backward(self, dvalues):
        self.dinputs = dvalues / (1 + self.backend.xp.exp(-self.inputs))
        return self.dinputs


class Scale(xpnn.Layer):
    """A user's layer with one learned parameter per feature; ``wrong`` forgets a factor."""

    parameter_names = (("scale", "scales", "dscales"),)

    def __init__(self, features, wrong=False, *, backend="numpy", dtype=None):
        super().__init__(backend=backend, dtype=dtype)
        self.wrong = wrong
        self.scales = self.backend.asarray(np.linspace(0.5, 1.5, features)[None, :])
        self.dscales = self.backend.zeros((1, features))

    def forward(self, inputs, training=False):
        self.inputs = self._inputs(inputs)
        self.output = self.inputs * self.scales
        return self.output

    def backward(self, dvalues):
        xp = self.backend.xp
        grad = dvalues if self.wrong else dvalues * self.inputs
        self.dscales = xp.sum(grad, axis=0, keepdims=True)
        self.dinputs = dvalues * self.scales
        return self.dinputs


class WrongMSE(xpnn.MeanSquaredError):
    def backward(self, dvalues, y_true):
        super().backward(dvalues, y_true)
        self.dinputs = self.dinputs * 2  # forgets the mean over the outputs
        return self.dinputs


def _dense(cls, backend):
    layer = cls(4, 3, backend=backend, seed=1)
    layer.biases = layer.backend.asarray(np.array([[0.1, -0.2, 0.3]]))
    return layer


def test_a_users_parts_pass(backend, rng):
    xpnn.check_gradients(Softplus(backend=backend), rng.standard_normal((5, 3)))
    xpnn.check_gradients(Scale(3, backend=backend), rng.standard_normal((5, 3)))


BROKEN = {
    "dinputs": (WrongDinputs, "inputs (dinputs)", None),
    "dweights": (WrongDweights, "weights (dweights)", "(3, 1)"),
    "dbiases": (WrongDbiases, "biases (dbiases)", None),
}


@pytest.mark.parametrize(("cls", "named", "index"), BROKEN.values(), ids=BROKEN.keys())
def test_a_wrong_backward_is_named(backend, rng, cls, named, index):
    """Each broken array, and no other, is named with its worst element, both values and the
    tolerance."""
    with pytest.raises(xpnn.GradientCheckError) as caught:
        xpnn.check_gradients(_dense(cls, backend), rng.standard_normal((5, 4)))
    message = str(caught.value)
    lines = message.splitlines()[1:]
    assert len(lines) == 1, message
    assert lines[0].startswith(f"  {named}"), message
    assert "analytic" in lines[0] and "numerical" in lines[0], message
    assert "1e-08 + 1e-06 *" in lines[0], message
    if index is not None:
        assert f"worst at index {index}" in lines[0], message
    assert f"{cls.__name__}(n_inputs=4, n_neurons=3" in message and "float64" in message


def test_the_values_in_the_message_are_the_gradients(rng):
    """The analytic value named is the broken one; the numerical one, the true gradient."""
    inputs = rng.standard_normal((5, 4))
    good = _dense(xpnn.Dense, xpnn.get_backend("numpy", "float64"))
    good.forward(good.backend.asarray(inputs))
    upstream = np.random.default_rng(0).standard_normal((5, 3))  # as seed=0 draws it
    good.backward(good.backend.asarray(upstream))
    true = float(xpnn.to_numpy(good.dweights)[3, 1])
    with pytest.raises(xpnn.GradientCheckError) as caught:
        xpnn.check_gradients(_dense(WrongDweights, "numpy"), inputs)
    found = re.search(r"analytic (\S+), numerical (\S+);", str(caught.value))
    assert found, caught.value
    analytic, numerical = float(found[1]), float(found[2])
    assert analytic == pytest.approx(true + 0.01, rel=1e-6)
    assert numerical == pytest.approx(true, rel=1e-6)


def test_a_users_wrong_parameter_gradient_is_named(backend, rng):
    with pytest.raises(xpnn.GradientCheckError, match=r"\n  scales \(dscales\): worst at"):
        xpnn.check_gradients(Scale(3, wrong=True, backend=backend), rng.standard_normal((5, 3)))


def test_a_wrong_loss_gradient_is_named(backend, rng):
    targets = rng.standard_normal((6, 2))
    xpnn.check_gradients(xpnn.MeanSquaredError(backend=backend), targets + 0.5, targets=targets)
    with pytest.raises(xpnn.GradientCheckError, match=r"the mean loss.*\n  inputs \(dinputs\)"):
        xpnn.check_gradients(WrongMSE(backend=backend), targets + 0.5, targets=targets)


def test_the_part_is_left_as_it_was(backend, rng):
    """The same arrays, holding the same values, on the same backend and dtype, with the same
    outputs and gradients of its own last passes."""
    layer = xpnn.Dense(4, 3, 0.01, backend=backend, seed=1)
    own_inputs = layer.backend.asarray(rng.standard_normal((2, 4)))
    layer.forward(own_inputs)
    layer.backward(layer.backend.asarray(rng.standard_normal((2, 3))))
    before = dict(vars(layer))
    values = {name: xpnn.to_numpy(a).copy() for name, a in before.items() if hasattr(a, "shape")}
    xpnn.check_gradients(layer, rng.standard_normal((5, 4)))
    assert vars(layer).keys() == before.keys()
    for name, value in vars(layer).items():
        assert value is before[name], name
    for name, value in values.items():
        np.testing.assert_array_equal(xpnn.to_numpy(getattr(layer, name)), value, err_msg=name)
    assert layer.backend.dtype_name == "float32"


def test_the_part_is_left_as_it_was_when_the_check_fails(rng):
    layer = _dense(WrongDbiases, "numpy")
    before = dict(vars(layer))
    weights = layer.weights.copy()
    with pytest.raises(xpnn.GradientCheckError):
        xpnn.check_gradients(layer, rng.standard_normal((5, 4)))
    assert vars(layer) == before
    np.testing.assert_array_equal(layer.weights, weights)


def test_dropout_draws_one_mask_and_keeps_its_count(backend, rng):
    dropout = xpnn.Dropout(0.5, backend=backend, seed=3)
    xpnn.check_gradients(dropout, rng.standard_normal((6, 5)))
    assert dropout.draws == 0  # its next mask is the one it would have drawn


def test_float32_is_a_coarser_check(backend, rng):
    """On request (and on a device without float64) the check runs in float32, with a larger
    step and tolerances: a correct part passes, a grossly wrong one fails."""
    inputs = rng.standard_normal((5, 4))
    xpnn.check_gradients(_dense(xpnn.Dense, backend), inputs, dtype="float32")
    with pytest.raises(xpnn.GradientCheckError, match=r"step 0\.01, float32\)"):
        xpnn.check_gradients(_dense(WrongDbiases, backend), inputs, dtype="float32")


def test_a_backend_without_float64_is_checked_in_float32(monkeypatch, rng):
    """As torch on Apple's MPS, whose backend refuses float64."""
    layer = _dense(WrongDbiases, "numpy")

    def no_float64(dtype):
        raise ValueError("this device has no float64")

    monkeypatch.setattr(layer.backend, "with_dtype", no_float64, raising=False)
    with pytest.raises(xpnn.GradientCheckError, match="float32"):
        xpnn.check_gradients(layer, rng.standard_normal((5, 4)))
    with pytest.raises(ValueError, match="no float64"):
        xpnn.check_gradients(layer, rng.standard_normal((5, 4)), dtype="float64")


def test_tolerances_are_the_callers(rng):
    inputs = rng.standard_normal((5, 4))
    xpnn.check_gradients(_dense(WrongDinputs, "numpy"), inputs, rtol=1e-2)
    with pytest.raises(xpnn.GradientCheckError, match=r"0 \+ 1e-05 \*"):
        xpnn.check_gradients(_dense(WrongDinputs, "numpy"), inputs, rtol=1e-5, atol=0)


TWO = np.ones((2, 2))
MSE = xpnn.MeanSquaredError
#: (part, inputs, other arguments, error, what its message says)
BAD_ARGUMENTS = {
    "optimizer": (xpnn.Adam, TWO, {}, TypeError, "part must be"),
    "text": (lambda: "Dense", TWO, {}, TypeError, "part must be"),
    "no forward": (xpnn.Layer, TWO, {}, TypeError, "no forward"),
    "width": (lambda: xpnn.Dense(4, 3), np.ones((2, 5)), {}, ValueError, r"\(samples, 4\)"),
    "1-D": (lambda: xpnn.Dense(4, 3), np.ones(4), {}, ValueError, "inputs must be 2-D"),
    "empty": (xpnn.ReLU, np.ones((0, 3)), {}, ValueError, "inputs must hold"),
    "NaN": (xpnn.ReLU, [[1.0, np.nan]], {}, ValueError, "inputs must be finite"),
    "text inputs": (xpnn.ReLU, [["a"]], {}, TypeError, "inputs must hold real"),
    "no targets": (MSE, TWO, {}, TypeError, "needs its targets"),
    "1-D predictions": (MSE, np.ones(2), {"targets": np.ones(2)}, ValueError, "inputs must"),
    "targets rows": (MSE, TWO, {"targets": np.ones(3)}, ValueError, "targets must have one"),
    "text targets": (MSE, TWO, {"targets": ["x", "y"]}, TypeError, "targets must hold"),
    "layer targets": (xpnn.ReLU, TWO, {"targets": np.ones(2)}, TypeError, "targets is for"),
    "step": (xpnn.ReLU, TWO, {"step": 0}, ValueError, "step"),
    "rtol": (xpnn.ReLU, TWO, {"rtol": -1}, ValueError, "rtol"),
    "atol": (xpnn.ReLU, TWO, {"atol": "0"}, TypeError, "atol"),
    "seed": (xpnn.ReLU, TWO, {"seed": 0.5}, TypeError, "seed"),
    "negative seed": (xpnn.ReLU, TWO, {"seed": -1}, ValueError, "seed must be a non-negative"),
    "dtype": (xpnn.ReLU, TWO, {"dtype": "float16"}, ValueError, "dtype"),
}


@pytest.mark.parametrize("case", BAD_ARGUMENTS.values(), ids=BAD_ARGUMENTS.keys())
def test_bad_arguments_are_named(case):
    make, inputs, arguments, error, message = case
    with pytest.raises(error, match=message):
        xpnn.check_gradients(make(), inputs, **arguments)


def test_bad_parameter_names_are_refused_before_the_part_changes():
    class Missing(Scale):
        parameter_names = (("scale", "scales", "dscales"), ("shift", "shifts", "dshifts"))

    layer = Missing(2)
    before = dict(vars(layer))
    with pytest.raises(TypeError, match="'shifts' but has none"):
        xpnn.check_gradients(layer, np.ones((2, 2)))
    assert vars(layer) == before


def test_a_gradient_of_the_wrong_shape_is_named():
    class Summed(Scale):
        def backward(self, dvalues):
            super().backward(dvalues)
            self.dinputs = self.dinputs.sum(axis=0)

    with pytest.raises(xpnn.GradientCheckError, match=r"dinputs of .* has shape \(2,\)"):
        xpnn.check_gradients(Summed(2), np.ones((3, 2)))
