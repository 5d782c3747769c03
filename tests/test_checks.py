"""Checks on what enters a model: values beyond its dtype, targets and inputs that would lose
their meaning, models whose parts do not fit together, parts shared between models.

Each refusal names the argument and comes before anything changes.
"""

from __future__ import annotations

import gc
import itertools
import math
import weakref

import numpy as np
import pytest
from helpers import load_model, seed_model, spiral
from parts import own

import xpnn
from xpnn.io import XpnnFileError, load_parameters, save_model, save_parameters

X_GOOD, Y_GOOD = spiral(20, 3)  # 60 samples, 2 features, 3 classes
BIG = 1e300  # finite in float64, infinite in float32


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


def _regression(backend, output=xpnn.Linear, dtype="float32", accuracy=None):
    return _model(backend, output, xpnn.MeanSquaredError, accuracy, outputs=1, dtype=dtype)


# -- values beyond the model's dtype ------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("X", r"X holds values beyond float32's range.*largest magnitude is 1e\+300"),
        ("validation X", r"validation_data\[0\] holds values beyond float32's range"),
        ("X on the device", r"X holds values beyond float32's range"),
    ],
)
def test_inputs_beyond_float32_are_refused_before_training(backend, where, message):
    model = seed_model(backend)
    before = _parameters(model)
    X = np.where(X_GOOD > 0.5, BIG, X_GOOD)  # float64, finite
    arguments = {"verbose": False}
    if where == "validation X":
        X, arguments["validation_data"] = X_GOOD, (X, Y_GOOD)
    elif where == "X on the device":
        X = model.backend.asarray(X, dtype=model.backend.xp.float64)
    with pytest.raises(ValueError, match=message):
        model.train(X, Y_GOOD, **arguments)
    _assert_unchanged(model, before)


def test_float64_inputs_beyond_float32_name_X_not_the_learning_rate(backend):
    """It used to train into NonFiniteLossError, which blamed the learning rate."""
    model = _regression(backend)
    X = np.full((8, 2), BIG)
    with pytest.raises(ValueError, match="X holds values beyond float32's range") as caught:
        model.train(X, np.ones(8), verbose=False)
    assert not isinstance(caught.value, xpnn.NonFiniteLossError)
    # In float64 the same values are held: the check is on the dtype, not a fixed bound.
    wide = _regression(backend, dtype="float64")
    prepared = xpnn.data.prepare(wide, X, np.ones(8))[0]
    assert float(xpnn.to_numpy(prepared)[0, 0]) == BIG


def test_targets_beyond_float32_are_refused(backend):
    model = _regression(backend)
    before = _parameters(model)
    with pytest.raises(ValueError, match="y holds values beyond float32's range"):
        model.train(X_GOOD, np.full(60, BIG), verbose=False)
    _assert_unchanged(model, before)


@pytest.mark.parametrize("call", ["predict", "evaluate"])
def test_predict_and_evaluate_refuse_inputs_beyond_float32(backend, call):
    model = seed_model(backend)
    X = np.where(X_GOOD > 0.5, BIG, X_GOOD)
    arguments = (X,) if call == "predict" else (X, Y_GOOD)
    with pytest.raises(ValueError, match="X holds values beyond float32's range"):
        getattr(model, call)(*arguments)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("call", ["predict", "evaluate"])
def test_predict_and_evaluate_never_return_nan_silently(backend, call):
    """Finite inputs whose computation overflows float32: an error, not NaN."""
    model = _regression(backend)
    weights, biases = model.get_parameters()[0]
    model.set_parameters([(np.full_like(weights, 1e20), biases), model.get_parameters()[1]])
    X = np.full((4, 2), 1e20)  # within float32; X @ W is 2e40, beyond it
    arguments = (X,) if call == "predict" else (X, np.ones(4))
    with pytest.raises(ValueError, match="overflows float32"):
        getattr(model, call)(*arguments)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_loss_that_overflows_before_any_update_does_not_blame_the_learning_rate(backend):
    model = _regression(backend)
    with pytest.raises(xpnn.NonFiniteLossError) as caught:
        model.train(np.full((8, 2), 1e30), np.ones(8), verbose=False)
    if model.backend.on_host:  # seen at the step itself
        assert "before any update" in str(caught.value)
        assert "learning rate" not in str(caught.value)
        assert model.optimizer.iterations == 0


#: What a message calls the weights of the first layer of a model of Dense(2, 8).
DENSE_2_8 = r"parameters\[0\] weights of Dense\(n_inputs=2, n_neurons=8[^)]*\)"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (BIG, rf"{DENSE_2_8} holds values beyond float32's range"),
        (np.nan, rf"{DENSE_2_8} holds NaN or infinity"),
        (-np.inf, rf"{DENSE_2_8} holds NaN or infinity"),
    ],
)
def test_set_parameters_checks_values_in_the_model_dtype(backend, values, message):
    model = _model(backend)
    before = _parameters(model)
    parameters = model.get_parameters()
    weights = parameters[0][0].astype(np.float64)
    weights[1, 2] = values
    parameters[0] = (weights, parameters[0][1])
    with pytest.raises(ValueError, match=message):
        model.set_parameters(parameters)
    _assert_unchanged(model, before)


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        (None, "parameters must be a list of tuples of arrays"),
        ({0: (1, 2)}, "parameters must be a list of tuples of arrays"),
        ([5, 6], r"parameters\[0\] must be a tuple of arrays; got 5"),
    ],
)
def test_set_parameters_refuses_what_is_not_a_list_of_tuples(backend, parameters, message):
    model = _model(backend)
    before = _parameters(model)
    with pytest.raises(TypeError, match=message):
        model.set_parameters(parameters)
    _assert_unchanged(model, before)


def test_set_parameters_takes_what_the_dtype_holds(backend):
    model = _model(backend, dtype="float64")
    parameters = model.get_parameters()
    parameters[0] = (np.full_like(parameters[0][0], BIG), parameters[0][1])
    model.set_parameters(parameters)
    assert model.get_parameters()[0][0][0, 0] == BIG


@pytest.fixture
def float64_files(tmp_path):
    """A float64 model, with optimizer state, whose weights hold 1e300; its files."""
    model = _model("numpy", dtype="float64", optimizer=xpnn.Adam())
    model.train(X_GOOD, Y_GOOD, verbose=False)
    parameters = model.get_parameters()
    parameters[1] = (np.full_like(parameters[1][0], BIG), parameters[1][1])
    model.set_parameters(parameters)
    save_model(model, tmp_path / "model")
    save_parameters(model, tmp_path / "parameters")
    return tmp_path


def test_loading_values_beyond_the_dtype_is_refused(backend, float64_files):
    beyond = r"tensor 'params.1.weights' holds values beyond float32's range"
    with pytest.raises(XpnnFileError, match=beyond):
        load_model(float64_files / "model", backend=backend, dtype="float32")
    assert load_model(float64_files / "model", backend=backend).get_parameters()[1][0][0, 0] == BIG
    model = _model(backend)
    before = _parameters(model)
    for name in ("model", "parameters"):
        with pytest.raises(XpnnFileError, match=beyond):
            load_parameters(model, float64_files / name)
    _assert_unchanged(model, before)


def test_loading_optimizer_state_beyond_the_dtype_is_refused(backend, tmp_path):
    model = _model("numpy", dtype="float64", optimizer=xpnn.Adam())
    model.train(X_GOOD, Y_GOOD, verbose=False)
    model.network.parameters.param_cache[0] = BIG  # Adam's cache: non-negative, here huge
    save_model(model, tmp_path / "checkpoint", checkpoint={})
    with pytest.raises(XpnnFileError, match=r"'optimizer\.param_cache' holds values beyond"):
        load_model(tmp_path / "checkpoint", backend=backend, dtype="float32")


# Settings that enter the arithmetic: each is refused where the model's dtype cannot hold it
# (inf, 0 from a positive value, 1 from a fraction below 1), and accepted in float64.
SETTINGS_BEYOND_FLOAT32 = {
    "SGD learning_rate": (lambda: {"optimizer": xpnn.SGD(learning_rate=BIG)}),
    "Adam learning_rate": (lambda: {"optimizer": xpnn.Adam(learning_rate=1e39)}),
    "Adam epsilon": (lambda: {"optimizer": xpnn.Adam(epsilon=1e-50)}),
    "Adam beta_2": (lambda: {"optimizer": xpnn.Adam(beta_2=0.99999999)}),
    "SGD momentum": (lambda: {"optimizer": xpnn.SGD(momentum=1 - 1e-9)}),
    "Adagrad epsilon": (lambda: {"optimizer": xpnn.Adagrad(epsilon=1e-46)}),
    "RMSprop rho": (lambda: {"optimizer": xpnn.RMSprop(rho=1 - 1e-10)}),
    "Dense weight_regularizer_l2": (lambda: {"layer": xpnn.Dense(3, 3, 0, 1e39)}),
    "Dense bias_regularizer_l1": (lambda: {"layer": xpnn.Dense(3, 3, bias_regularizer_l1=BIG)}),
    "Dense weight_scale": (lambda: {"layer": xpnn.Dense(3, 3, weight_scale=1e-50)}),
    "LeakyReLU alpha": (lambda: {"layer": xpnn.LeakyReLU(alpha=1e39)}),
    "RegressionAccuracy precision": (
        lambda: {"accuracy": xpnn.RegressionAccuracy(precision=1e-60)}
    ),
}


def _with_setting(backend, dtype, optimizer=None, layer=None, accuracy=None):
    model = xpnn.Model(backend=backend, seed=0, dtype=dtype)
    model.add(xpnn.Dense(2, 3))
    model.add(layer or xpnn.ReLU())
    model.add(xpnn.Dense(3, 1))
    model.add(xpnn.Linear())
    model.set(loss=xpnn.MeanSquaredError(), optimizer=optimizer or xpnn.SGD(0.1), accuracy=accuracy)
    return model


@pytest.mark.parametrize("case", SETTINGS_BEYOND_FLOAT32)
def test_settings_the_dtype_cannot_hold_are_refused_at_finalize(backend, case):
    owner, name = case.split()
    model = _with_setting(backend, "float32", **SETTINGS_BEYOND_FLOAT32[case]())
    with pytest.raises(ValueError, match=rf"{owner} {name}=.* in float32, the model's dtype"):
        model.finalize()
    _with_setting(backend, "float64", **SETTINGS_BEYOND_FLOAT32[case]()).finalize()


def test_a_setting_changed_after_finalize_is_refused_at_train(backend):
    model = _regression(backend)
    before = _parameters(model)
    model.optimizer.learning_rate = BIG
    with pytest.raises(ValueError, match=r"SGD learning_rate=1e\+300 is inf in float32"):
        model.train(X_GOOD, np.zeros(60), verbose=False)
    _assert_unchanged(model, before)
    model.optimizer.learning_rate = 0.1
    model.optimizer.current_learning_rate = BIG  # as a checkpoint could restore it
    with pytest.raises(ValueError, match="SGD current_learning_rate=1e"):
        model.train(X_GOOD, np.zeros(60), verbose=False)
    _assert_unchanged(model, before)


@pytest.mark.parametrize(
    "make",
    [
        lambda: xpnn.SGD(learning_rate=math.inf),
        lambda: xpnn.Adam(epsilon=math.inf),
        lambda: xpnn.Dense(2, 2, weight_regularizer_l1=math.inf),
        lambda: xpnn.LeakyReLU(alpha=math.inf),
        lambda: xpnn.RegressionAccuracy(precision=math.inf),
        lambda: xpnn.Optimizer(learning_rate=1.0, decay=math.inf),
    ],
)
def test_infinite_settings_are_refused_by_the_constructors(make):
    with pytest.raises(ValueError, match="must be a finite number"):
        make()


def test_initial_weights_beyond_the_dtype_name_weight_scale(backend):
    # 3e38 fits in float32, but draws above 1.13 times it do not.
    with pytest.raises(
        ValueError, match=r"weight_scale=3e\+38 of Dense\(n_inputs=20, n_neurons=20[^)]*\) draws"
    ):
        xpnn.Dense(20, 20, weight_scale=3e38, backend=backend)
    layer = xpnn.Dense(20, 20, weight_scale=3e38, backend=backend, dtype="float64")
    model = xpnn.Model(backend=backend, seed=0)  # float32
    model.add(layer)
    model.set(loss=xpnn.MeanSquaredError())
    with pytest.raises(ValueError, match="weight_scale=3e"):
        model.finalize()
    assert layer.backend.dtype_name == "float64"  # the layer was left as it was


# -- targets and inputs -------------------------------------------------------------------------

ONE_HOT = np.eye(3)[Y_GOOD]


@pytest.mark.parametrize(
    ("y", "message"),
    [
        (np.full((60, 3), 5.0), "a row sums to 15"),
        (np.ones((60, 3)), "a row sums to 3"),
        (np.zeros((60, 3)), "a row sums to 0"),
        (ONE_HOT * 2 - np.roll(ONE_HOT, 1, axis=1), "its smallest value is -1"),  # sums to 1
        (ONE_HOT * 0.999, "a row sums to 0.999"),
    ],
    ids=["fives", "multi-hot", "zeros", "negative", "short"],
)
def test_one_hot_rows_must_be_probabilities(backend, y, message):
    model = seed_model(backend)
    before = _parameters(model)
    with pytest.raises(ValueError, match=rf"y holds one-hot rows.*{message}"):
        model.train(X_GOOD, y, verbose=False)
    with pytest.raises(ValueError, match=r"validation_data\[1\] holds one-hot rows"):
        model.train(X_GOOD, Y_GOOD, validation_data=(X_GOOD, y), verbose=False)
    on_device = model.backend.asarray(y)  # checked where it lies, with one read
    with pytest.raises(ValueError, match=rf"y holds one-hot rows.*{message}"):
        model.train(X_GOOD, on_device, verbose=False)
    _assert_unchanged(model, before)


@pytest.mark.parametrize(
    "y",
    [
        ONE_HOT,
        ONE_HOT.astype(np.int8),
        ONE_HOT * 0.9 + 0.1 / 3,  # label smoothing
        (ONE_HOT * 0.9 + 0.1 / 3).astype(np.float32),
        np.full((60, 3), 1 / 3, dtype=np.float16),
    ],
    ids=["one-hot", "int8", "smoothed", "smoothed float32", "uniform float16"],
)
def test_one_hot_and_smoothed_rows_train(backend, y):
    """Rows of probabilities train as their classes do: the loss falls and the classes are
    learnt; uniform rows (nothing to learn) give log(3), whatever the model predicts."""
    uniform = np.all(y == y[0])
    for dtype in ("float32", "float64"):
        model = seed_model(backend, dtype=dtype)
        before = _parameters(model)
        history = model.train(X_GOOD, y, epochs=100, verbose=False)
        losses = np.array(history["loss"])
        assert np.all(np.isfinite(losses))
        assert not np.array_equal(before[0], _parameters(model)[0])  # the weights moved
        # The loss over the rows is the book's, -log(sum(p * row)), of the model's predictions.
        p = np.clip(xpnn.to_numpy(model.predict(X_GOOD)).astype(np.float64), 1e-7, 1 - 1e-7)
        expected = -np.mean(np.log(np.sum(p * y.astype(np.float64), axis=1)))
        rel = 1e-5 if dtype == "float32" else 1e-9
        assert model.evaluate(X_GOOD, y)["loss"] == pytest.approx(expected, rel=rel)
        if uniform:  # -log(sum(p * 1/3)) = log(3) for any p (1/3 in float16 is 0.33325)
            np.testing.assert_allclose(losses, -np.log(float(y[0, 0])), rtol=1e-5)
            continue
        assert losses[-1] < 0.7 * losses[0]
        assert model.evaluate(X_GOOD, Y_GOOD)["accuracy"] > 0.7  # chance is 1/3


@pytest.mark.parametrize(
    ("output", "loss", "accuracy", "y", "message"),
    [
        (xpnn.Sigmoid, xpnn.BinaryCrossentropy, None, 5.0, "BinaryCrossentropy takes targets"),
        (xpnn.Sigmoid, xpnn.BinaryCrossentropy, None, -0.5, "BinaryCrossentropy takes targets"),
        (xpnn.Sigmoid, xpnn.MeanSquaredError, None, 2.0, "the output layer gives values in"),
        (xpnn.Tanh, xpnn.MeanSquaredError, None, 3.0, r"output layer gives values in \[-1, 1\]"),
        (xpnn.ReLU, xpnn.MeanAbsoluteError, None, -1.0, r"gives values in \[0, inf\]"),
        (
            lambda: xpnn.LeakyReLU(alpha=0),
            xpnn.MeanSquaredError,
            None,
            -1e-3,
            r"y holds values in \[-0.001, -0.001\], but the output layer gives values in "
            r"\[0, inf\]",
        ),
        (xpnn.Linear, xpnn.MeanSquaredError, None, 1e20, "MeanSquaredError summed over 60"),
        (xpnn.Linear, xpnn.MeanAbsoluteError, None, 1e37, "MeanAbsoluteError summed over 60"),
        (
            xpnn.Sigmoid,
            xpnn.BinaryCrossentropy,
            xpnn.CategoricalAccuracy(binary=True),
            0.9,
            r"y must hold only 0 and 1 for CategoricalAccuracy\(binary=True\)",
        ),
        (
            xpnn.Linear,
            xpnn.MeanSquaredError,
            xpnn.RegressionAccuracy(),
            0.5,
            "precision defaults to std",
        ),
    ],
    ids=[
        "BCE above 1",
        "BCE negative",
        "sigmoid out of reach",
        "tanh out of reach",
        "relu negative",
        "leaky relu alpha 0 negative",
        "MSE overflow",
        "MAE overflow",
        "binary accuracy smoothed",
        "regression precision 0",
    ],
)
def test_targets_the_loss_or_output_cannot_take(backend, output, loss, accuracy, y, message):
    model = _model(backend, output, loss, accuracy, outputs=1)
    before = _parameters(model)
    with pytest.raises(ValueError, match=message):
        model.train(X_GOOD, np.full(60, y), verbose=False)
    _assert_unchanged(model, before)


LINEAR = X_GOOD @ np.array([0.5, -0.3])  # an easy target in [-0.5, 0.4], negative included


@pytest.mark.parametrize(
    ("output", "y"),
    [
        (xpnn.Tanh, LINEAR),
        (xpnn.Linear, LINEAR),
        (xpnn.LeakyReLU, LINEAR),  # alpha > 0: any real number, negative ones included
        (lambda: xpnn.LeakyReLU(alpha=0.5), LINEAR),
        (xpnn.Sigmoid, np.abs(LINEAR)),
        (xpnn.ReLU, np.abs(LINEAR)),
    ],
    ids=["tanh", "linear", "leaky relu", "leaky relu 0.5", "sigmoid", "relu"],
)
def test_targets_in_reach_train(backend, output, y):
    """Targets the output layer can reach are taken, and learnt: the loss falls well below its
    start."""
    model = _model(
        backend, output, xpnn.MeanSquaredError, optimizer=xpnn.Adam(learning_rate=0.02), outputs=1
    )
    history = model.train(X_GOOD, y, epochs=60, batch_size=16, verbose=False)
    losses = np.array(history["loss"])
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.6 * losses[0]
    if getattr(model.layers[-1], "alpha", 0) >= 0.5:
        # Below the floor that predictions >= 0 (a ReLU's) cannot go beneath: the negative
        # targets are reached, not merely let through.
        relu_floor = np.mean(np.minimum(y, 0) ** 2)
        assert model.evaluate(X_GOOD, y)["loss"] < 0.3 * relu_floor


def test_targets_far_out_train_where_the_dtype_holds_their_squares(backend):
    model = _model(backend, xpnn.Linear, xpnn.MeanSquaredError, outputs=1, dtype="float64")
    start = xpnn.to_numpy(model.predict(X_GOOD))[:, 0]
    before = _parameters(model)
    history = model.train(X_GOOD, np.full(60, 1e20), verbose=False)
    # The first loss is taken before the update: 1e40, finite in float64.
    assert history["loss"][0] == pytest.approx(np.mean((1e20 - start) ** 2), rel=1e-9)
    after = _parameters(model)
    assert all(np.all(np.isfinite(a)) for a in after)
    assert not np.array_equal(before[2], after[2])


class _Masked:
    X = np.ma.masked_array(X_GOOD, mask=X_GOOD > 0.5)
    y = np.ma.masked_array(Y_GOOD, mask=Y_GOOD == 2)


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda m: m.train(_Masked.X, Y_GOOD, verbose=False), "X"),
        (lambda m: m.train(X_GOOD, _Masked.y, verbose=False), "y"),
        (
            lambda m: m.train(X_GOOD, Y_GOOD, validation_data=(_Masked.X, Y_GOOD), verbose=False),
            r"validation_data\[0\]",
        ),
        (lambda m: m.evaluate(X_GOOD, _Masked.y), "y"),
        (lambda m: m.predict(_Masked.X), "X"),
        (lambda m: m.predict(np.ma.masked_array(X_GOOD)), "X"),  # nothing masked: still refused
        (
            lambda m: m.set_parameters([(np.ma.masked_array(w), b) for w, b in m.get_parameters()]),
            r"parameters\[0\] weights of Dense\(n_inputs=2, n_neurons=64[^)]*\)",
        ),
        (lambda m: m.layers[0].forward(_Masked.X), "inputs"),  # the book's loop
    ],
)
def test_masked_arrays_are_refused(backend, call, argument):
    model = seed_model(backend)
    before = _parameters(model)
    with pytest.raises(TypeError, match=rf"{argument} is a masked array \(numpy.ma\)"):
        call(model)
    _assert_unchanged(model, before)


class _Frame:
    """A pandas-like table: converts to a numeric array through ``__array__``."""

    def __init__(self, values):
        self.values = values

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.values, dtype=dtype)


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        ({"X": X_GOOD + 1j}, TypeError, "X must hold real numbers; got dtype complex128"),
        ({"X": X_GOOD.astype(object)}, TypeError, "X must hold real numbers; got dtype object"),
        ({"X": X_GOOD > 0}, TypeError, "X must hold real numbers; got dtype bool"),
        ({"X": X_GOOD.astype(str)}, TypeError, "X must hold real numbers"),
        (
            {"X": np.zeros((60, 2), dtype="datetime64[s]")},
            TypeError,
            "X must hold real numbers; got dtype datetime64",
        ),
        (
            {"X": np.zeros((60, 2), dtype=[("a", "f4"), ("b", "f4")])},
            TypeError,
            "X must hold real numbers",
        ),
        ({"X": {"a": 1}}, TypeError, "X must be an array of numbers; got dict"),
        ({"X": [[1.0, 2.0], [3.0]]}, TypeError, "X must be an array of numbers, with rows of one"),
        ({"y": Y_GOOD + 0j}, TypeError, "y must hold numbers; got dtype complex128"),
        ({"y": Y_GOOD.astype(object)}, TypeError, "y must hold numbers; got dtype object"),
    ],
)
def test_array_likes_that_would_lose_meaning_are_refused(backend, overrides, error, message):
    model = seed_model(backend)
    before = _parameters(model)
    arguments = {"X": X_GOOD, "y": Y_GOOD, **overrides}
    with pytest.raises(error, match=message):
        model.train(arguments["X"], arguments["y"], verbose=False)
    _assert_unchanged(model, before)


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        (lambda w: w + 1j, "must hold real numbers; got dtype complex"),
        (lambda w: w > 0, "must hold real numbers; got dtype bool"),
        (lambda w: w.astype(object), "must hold real numbers; got dtype object"),
        (lambda w: [[1.0], [2.0, 3.0]], "must be an array; got list"),
    ],
)
def test_set_parameters_refuses_what_would_lose_meaning(backend, weights, message):
    model = _model(backend)
    before = _parameters(model)
    parameters = model.get_parameters()
    parameters[0] = (weights(parameters[0][0]), parameters[0][1])
    with pytest.raises(
        TypeError,
        match=rf"parameters\[0\] weights of Dense\(n_inputs=2, n_neurons=8[^)]*\) {message}",
    ):
        model.set_parameters(parameters)
    _assert_unchanged(model, before)


def test_numeric_array_likes_and_lists_train(backend):
    """A table, lists, integers and float16 train exactly as the same numbers do when given
    on the device in the model's dtype (float32): converted, not misread."""
    X16, y32, X10 = X_GOOD.astype(np.float16), Y_GOOD.astype(np.float32), X_GOOD * 10
    cases = [
        ((_Frame(X_GOOD), _Frame(Y_GOOD)), X_GOOD),
        ((X_GOOD.tolist(), Y_GOOD.tolist()), X_GOOD),
        ((X10.astype(np.int16), Y_GOOD.astype(np.uint8)), np.trunc(X10)),
        ((X16, y32), X16),
        ((X_GOOD, Y_GOOD), X_GOOD),  # float64
    ]
    for given, same in cases:
        model, reference = seed_model(backend), seed_model(backend)
        be = reference.backend
        same = (be.asarray(same.astype(np.float32)), be.asarray(Y_GOOD, dtype=be.index_dtype))
        start = _parameters(model)
        history = model.train(*given, epochs=20, verbose=False)
        expected = reference.train(*same, epochs=20, verbose=False)
        assert history["loss"] == expected["loss"]
        assert math.isfinite(history["loss"][-1]) and history["loss"][-1] < history["loss"][0]
        for a, b in zip(_parameters(model), _parameters(reference), strict=True):
            np.testing.assert_array_equal(a, b)
        assert not np.array_equal(start[0], _parameters(model)[0])


# -- incoherent models, refused at finalize() ---------------------------------------------------

OUTPUTS = {
    "Softmax": xpnn.Softmax,
    "Sigmoid": xpnn.Sigmoid,
    "Linear": xpnn.Linear,
    "ReLU": xpnn.ReLU,
    "Tanh": xpnn.Tanh,
    "LeakyReLU": xpnn.LeakyReLU,
    "Dense": None,  # the Dense layer is the last
}
LOSSES = {
    "CategoricalCrossentropy": xpnn.CategoricalCrossentropy,
    "BinaryCrossentropy": xpnn.BinaryCrossentropy,
    "MeanSquaredError": xpnn.MeanSquaredError,
    "MeanAbsoluteError": xpnn.MeanAbsoluteError,
}
METRICS = {
    "CategoricalAccuracy": lambda: xpnn.CategoricalAccuracy(),
    "CategoricalAccuracy(binary)": lambda: xpnn.CategoricalAccuracy(binary=True),
    "RegressionAccuracy": lambda: xpnn.RegressionAccuracy(),
    "none": lambda: None,
}


def _coherence_problem(output: str, loss: str, metric: str) -> str | None:
    """The rules README states, written out independently: what finalize() must say (a
    pattern), or None for a legal model."""
    if loss == "CategoricalCrossentropy" and output != "Softmax":
        return f"CategoricalCrossentropy needs a Softmax output layer; got {output}"
    if loss == "BinaryCrossentropy" and output != "Sigmoid":
        return f"BinaryCrossentropy needs a Sigmoid output layer; got {output}"
    if metric == "RegressionAccuracy" and loss == "CategoricalCrossentropy":
        return "RegressionAccuracy compares values, but CategoricalCrossentropy learns classes"
    if metric == "CategoricalAccuracy" and output == "Sigmoid":
        return r"with a Sigmoid output layer use CategoricalAccuracy\(binary=True\)"
    if metric == "CategoricalAccuracy" and output != "Softmax":
        return rf"CategoricalAccuracy\(\) takes .* Softmax output layer; got {output}"
    if metric == "CategoricalAccuracy(binary)" and output != "Sigmoid":
        return rf"binary=True\).* needs a Sigmoid output layer; got {output}"
    if metric == "RegressionAccuracy" and output in ("Softmax", "Sigmoid"):
        return f"RegressionAccuracy compares .* a {output} output layer predicts classes"
    return None


def _targets(output: str, loss: str):
    if loss == "CategoricalCrossentropy":
        return Y_GOOD
    if output in ("Softmax", "Sigmoid"):
        return ONE_HOT  # in [0, 1], 0/1 for the binary metric
    return np.abs(X_GOOD[:, :1] * X_GOOD[:, 1:]) @ np.ones((1, 3))  # >= 0: every output reaches


COMBINATIONS = list(itertools.product(OUTPUTS, LOSSES, METRICS))
EPOCHS = 40


def test_the_combinations_cover_every_registered_output_loss_and_metric():
    """Each of xpnn's layers but Dropout ends a model below, with each loss and each metric."""
    assert set(OUTPUTS) | {"Dropout"} == set(own("layer"))
    assert set(LOSSES) == set(own("loss"))
    assert {type(make()).__name__ for make in METRICS.values()} - {"NoneType"} == set(own("metric"))


def _figures(loss: str, metric: str, model, y) -> dict[str, float]:
    """The loss and accuracy over ``(X_GOOD, y)``, computed here with NumPy from the model's
    predictions, following the book's definitions (as README states them)."""
    p = xpnn.to_numpy(model.predict(X_GOOD)).astype(np.float64)
    y = np.asarray(y, dtype=np.float64)
    clipped = np.clip(p, 1e-7, 1 - 1e-7)
    if loss == "CategoricalCrossentropy":
        rows = np.eye(p.shape[1])[y.astype(int)] if y.ndim == 1 else y
        value = -np.mean(np.log(np.sum(clipped * rows, axis=1)))
    elif loss == "BinaryCrossentropy":
        value = -np.mean(y * np.log(clipped) + (1 - y) * np.log(1 - clipped))
    elif loss == "MeanSquaredError":
        value = np.mean((y - p) ** 2)
    else:
        value = np.mean(np.abs(y - p))
    figures = {"loss": value}
    p32, y32 = p.astype(np.float32), y.astype(np.float32)
    if metric == "CategoricalAccuracy":
        labels = y if y.ndim == 1 else np.argmax(y, axis=1)
        figures["accuracy"] = np.mean(np.argmax(p, axis=1) == labels)
    elif metric == "CategoricalAccuracy(binary)":
        figures["accuracy"] = np.mean((p32 > 0.5) == (y32 == 1))
    elif metric == "RegressionAccuracy":
        precision = np.float32(np.std(y) / 250)
        assert model.accuracy.precision == pytest.approx(precision, rel=1e-6)
        figures["accuracy"] = np.mean(np.abs(p32 - y32) < precision)
    return figures


@pytest.mark.parametrize(("output", "loss", "metric"), COMBINATIONS)
def test_output_layer_loss_and_metric_fit_together(backend, output, loss, metric):
    model = _model(
        backend,
        OUTPUTS[output],
        LOSSES[loss],
        METRICS[metric](),
        optimizer=xpnn.Adam(learning_rate=0.02),
        finalize=False,
    )
    problem = _coherence_problem(output, loss, metric)
    if problem is not None:
        with pytest.raises(ValueError, match=problem):
            model.finalize()
        assert model.network is None
        return
    model.finalize()
    y = _targets(output, loss)
    before = _figures(loss, "none", model, y)["loss"]  # evaluate() wants a precision first
    history = model.train(X_GOOD, y, epochs=EPOCHS, batch_size=16, verbose=False)
    after = model.evaluate(X_GOOD, y)
    # The figures are what NumPy makes of the model's own predictions...
    expected = _figures(loss, metric, model, y)
    assert after["data_loss"] == pytest.approx(expected["loss"], rel=1e-4)
    if metric != "none":
        assert after["accuracy"] == pytest.approx(expected["accuracy"], abs=1e-6)
        assert len(history["accuracy"]) == EPOCHS and not math.isnan(history["accuracy"][-1])
    # ...and training on an easy problem lowers the loss, evaluated and as recorded.
    assert after["loss"] < 0.95 * before
    assert history["loss"][-1] < 0.95 * history["loss"][0]


def test_the_table_has_legal_and_illegal_models():
    legal = [c for c in COMBINATIONS if _coherence_problem(*c) is None]
    assert len(COMBINATIONS) == 112 and len(legal) == 32


def test_more_incoherent_models(backend):
    with pytest.raises(ValueError, match="a Softmax over 1 output always gives 1"):
        _model(backend, xpnn.Softmax, xpnn.MeanSquaredError, outputs=1)
    with pytest.raises(ValueError, match="a Softmax over 1 output always gives 1"):
        _model(backend, xpnn.Softmax, xpnn.CategoricalCrossentropy, outputs=1)
    model = _model(backend, None, xpnn.MeanSquaredError, outputs=1, finalize=False)
    model.add(xpnn.Dropout(0.5))
    with pytest.raises(ValueError, match="Dropout cannot be the output layer"):
        model.finalize()
    # One sigmoid output with CategoricalAccuracy(): a silently wrong accuracy (0.49) before.
    with pytest.raises(ValueError, match=r"CategoricalAccuracy\(binary=True\)"):
        _model(
            backend,
            xpnn.Sigmoid,
            xpnn.BinaryCrossentropy,
            xpnn.CategoricalAccuracy(),
            outputs=1,
        )


# -- a part belongs to one model ----------------------------------------------------------------


def test_a_layer_in_one_model_is_refused_by_another(backend):
    a = _model(backend)
    weights = a.layers[0].weights
    before = _parameters(a)
    b = xpnn.Model(backend="numpy", seed=1, dtype="float64")
    with pytest.raises(
        ValueError,
        match=r"layer: this Dense\(n_inputs=2, n_neurons=8[^)]*\) already belongs to another",
    ):
        b.add(a.layers[0])
    assert b.layers == []
    # Put in through the list itself: finalize() refuses it too.
    b.layers.append(a.layers[0])
    b.set(loss=xpnn.MeanSquaredError())
    with pytest.raises(
        ValueError, match=r"layer 0: this Dense\(n_inputs=2, n_neurons=8[^)]*\) already belongs"
    ):
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
    """A part knows its model by a weak reference: it keeps no model alive, and a model that is
    gone lets it join another."""
    a = seed_model("numpy")
    layer, optimizer = a.layers[0], a.optimizer
    b = xpnn.Model(seed=1)
    with pytest.raises(ValueError, match="already belongs to another model"):
        b.add(layer)  # while a lives
    gone = weakref.ref(a)
    del a
    gc.collect()
    assert gone() is None  # neither its layers nor its optimizer kept it alive
    b.add(layer)
    b.set(optimizer=optimizer)
    assert b.layers == [layer] and b.optimizer is optimizer
    assert layer.model_is(b) and optimizer.model_is(b)


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


@pytest.mark.parametrize(
    "make",
    [
        lambda a: xpnn.Dense(a, 3),
        lambda a: xpnn.Adam(learning_rate=a),
        lambda a: seed_model("numpy", seed=0).train(*spiral(10, 3), epochs=a, verbose=False),
    ],
    ids=["Dense n_inputs", "Adam learning_rate", "train epochs"],
)
def test_an_array_where_a_number_belongs_is_named_by_its_shape(backend, make):
    """An error names a wrong array by its type, shape and dtype, not by its thousand values."""
    wrong = xpnn.get_backend(backend).xp.zeros((1000, 2))
    with pytest.raises((TypeError, ValueError)) as raised:
        make(wrong)
    message = str(raised.value)
    assert "of shape (1000, 2) and dtype" in message
    assert len(message) < 200


def test_a_long_value_in_an_error_is_cut():
    with pytest.raises(TypeError) as raised:
        xpnn.Model(seed=0).add("x" * 1000)
    message = str(raised.value)
    assert message.endswith("...") and len(message) < 200


@pytest.mark.parametrize(
    ("seed", "error"),
    [("42", TypeError), (-1, ValueError), ([1, 2], TypeError), (True, TypeError), (1.5, TypeError)],
)
@pytest.mark.parametrize(
    ("make", "generators"),
    [
        (lambda seed: xpnn.Model(seed=seed), False),
        (lambda seed: xpnn.Dense(2, 3, seed=seed), False),
        (lambda seed: xpnn.Dropout(0.1, seed=seed), False),
        (lambda seed: xpnn.datasets.spiral_data(10, 3, seed=seed), True),
        (lambda seed: xpnn.datasets.vertical_data(10, 3, seed=seed), True),
    ],
    ids=["Model", "Dense", "Dropout", "spiral_data", "vertical_data"],
)
def test_a_seed_that_is_not_one_is_refused_by_name(make, generators, seed, error):
    """NumPy's own errors for a bad seed do not name it. A model and its layers take None or
    an int (a file records an int); the data sets take what ``np.random.default_rng`` takes,
    a list of ints too."""
    if generators and seed == [1, 2]:
        make(seed)
        return
    with pytest.raises(error, match="seed must be None"):
        make(seed)


@pytest.mark.parametrize("batch_size", [float("nan"), float("inf"), 2.5])
def test_evaluate_and_predict_name_a_batch_size_that_is_not_one(backend, batch_size):
    model = _model(backend)
    for call in (
        lambda: model.evaluate(X_GOOD, Y_GOOD, batch_size=batch_size),
        lambda: model.predict(X_GOOD, batch_size=batch_size),
    ):
        with pytest.raises(TypeError, match="batch_size must be a positive integer"):
            call()
