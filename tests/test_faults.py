"""Faults during training (a diverging loss, Ctrl-C) and bad input, each with a clear error."""

from __future__ import annotations

import signal

import numpy as np
import pytest
from helpers import press_ctrl_c_at_step, seed_model, spiral

import xpnn


def _diverging(backend):
    """A regression with a learning rate far too large: the loss overflows in epoch 2."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(64, 4)) * 10, rng.normal(size=(64, 1)) * 10
    model = xpnn.Model(backend=backend, seed=0)
    model.add(xpnn.Dense(4, 8, weight_scale=0.5))
    model.add(xpnn.ReLU())
    model.add(xpnn.Dense(8, 1, weight_scale=0.5))
    model.add(xpnn.Linear())
    model.set(loss=xpnn.MeanSquaredError(), optimizer=xpnn.SGD(learning_rate=0.05))
    model.finalize()
    return model, X, y


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_non_finite_loss_stops_training(backend):
    model, X, y = _diverging(backend)
    with pytest.raises(xpnn.NonFiniteLossError, match="epoch 2") as caught:
        model.train(X, y, epochs=50, batch_size=16, print_every=1, verbose=False)
    params = [a for pair in model.get_parameters() for a in pair]
    assert all(np.all(np.isfinite(a)) for a in params)
    if model.backend.on_host:
        # Seen at once: stopped before the bad step's update, after 4 + 0 good steps.
        assert caught.value.step == 1 and "step 1" in str(caught.value)
        assert model.optimizer.iterations == 4
    else:
        # Seen at the report of epoch 2: back to the report of epoch 1.
        assert caught.value.step is None
        assert model.optimizer.iterations == 4
    assert model.epochs_trained == 1


def test_ctrl_c_stops_after_the_current_step(backend, monkeypatch):
    X, y = spiral(100, 3)
    model = seed_model(backend, seed=0)
    press_ctrl_c_at_step(model, 7, monkeypatch)
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN in a job started in the background
    history = model.train(X, y, epochs=10, batch_size=100, print_every=1, verbose=False)
    assert model.optimizer.iterations == 7  # 3 steps per epoch: stopped inside epoch 3
    assert history["epoch"] == [1, 2] and model.epochs_trained == 2
    assert all(np.all(np.isfinite(a)) for pair in model.get_parameters() for a in pair)
    # Ctrl-C works as it did again once train returns.
    assert signal.getsignal(signal.SIGINT) is before


@pytest.fixture
def model(backend):
    return seed_model(backend, seed=0)


X_GOOD, Y_GOOD = spiral(20, 3)

BAD_TRAIN_INPUT = {
    "X 1-D": (dict(X=X_GOOD[:, 0]), ValueError, "X must be 2-D"),
    "X 3-D": (dict(X=X_GOOD[None]), ValueError, "X must be 2-D"),
    "X empty": (dict(X=X_GOOD[:0], y=Y_GOOD[:0]), ValueError, "X is empty"),
    "X too wide": (dict(X=np.ones((60, 5))), ValueError, "X has 5 features"),
    "X with NaN": (dict(X=np.where(X_GOOD > 0.5, np.nan, X_GOOD)), ValueError, "X contains NaN"),
    "X with inf": (dict(X=np.where(X_GOOD > 0.5, np.inf, X_GOOD)), ValueError, "X contains NaN"),
    "X not numbers": (dict(X=np.full((60, 2), "a")), TypeError, "X must hold real numbers"),
    "y shorter": (dict(y=Y_GOOD[:-1]), ValueError, "y has 59 samples but X has 60"),
    "y too large": (dict(y=np.where(Y_GOOD == 2, 3, Y_GOOD)), ValueError, r"y holds .*\[0, 2\]"),
    "y negative": (dict(y=Y_GOOD.astype(int) - 1), ValueError, r"y holds class labels in \[-1"),
    "y fractional": (dict(y=Y_GOOD + 0.5), ValueError, "y holds class labels, which must be whole"),
    "y one-hot too narrow": (dict(y=np.eye(2)[Y_GOOD % 2]), ValueError, "y is one-hot with 2"),
    "y NaN": (dict(y=np.where(Y_GOOD == 2, np.nan, Y_GOOD)), ValueError, "y contains NaN"),
    "y bool": (dict(y=Y_GOOD == 1), TypeError, "y must hold numbers"),
    "epochs 0": (dict(epochs=0), ValueError, "epochs must be a positive integer"),
    "epochs float": (dict(epochs=2.5), TypeError, "epochs must be a positive integer"),
    "batch_size -1": (dict(batch_size=-1), ValueError, "batch_size must be a positive integer"),
    "batch_size str": (dict(batch_size="32"), TypeError, "batch_size"),
    "print_every 0": (dict(print_every=0), ValueError, "print_every"),
    "shuffle str": (dict(shuffle="yes"), TypeError, "shuffle must be True or False"),
    "validation not a pair": (dict(validation_data=X_GOOD), TypeError, "validation_data"),
    "validation too wide": (
        dict(validation_data=(np.ones((4, 3)), np.zeros(4))),
        ValueError,
        r"validation_data\[0\] has 3 features",
    ),
}


@pytest.mark.parametrize("case", BAD_TRAIN_INPUT.keys())
def test_bad_train_input_is_refused_before_anything_changes(model, case):
    overrides, error, message = BAD_TRAIN_INPUT[case]
    arguments = {"X": X_GOOD, "y": Y_GOOD, "epochs": 2, "verbose": False, **overrides}
    before = model.get_parameters()
    state = model.rng.bit_generator.state
    with pytest.raises(error, match=message):
        model.train(arguments.pop("X"), arguments.pop("y"), **arguments)
    for a, b in zip(before, model.get_parameters()):
        np.testing.assert_array_equal(a[0], b[0])
    assert model.optimizer.iterations == 0 and model.rng.bit_generator.state == state


def test_model_state_errors():
    model = xpnn.Model(seed=0)
    with pytest.raises(ValueError, match="no layers"):
        model.finalize()
    model.add(xpnn.Dense(2, 4))
    with pytest.raises(ValueError, match="no loss"):
        model.finalize()
    with pytest.raises(ValueError, match=r"finalize\(\) before train"):
        model.train(X_GOOD, Y_GOOD)
    model.add(xpnn.Dense(5, 3))
    model.set(loss=xpnn.CategoricalCrossentropy())
    with pytest.raises(
        ValueError,
        match=r"layer 1 \(Dense\(n_inputs=5, n_neurons=3[^)]*\)\) takes 5 inputs but layer 0",
    ):
        model.finalize()
    with pytest.raises(TypeError, match="layer must be an xpnn layer"):
        model.add("Dense")
    relu = xpnn.ReLU()
    model.add(relu)
    layers = list(model.layers)
    with pytest.raises(ValueError, match=r"layer: this ReLU\(\) is already in the model"):
        model.add(relu)  # its saved inputs would serve two places in the backward pass
    assert model.layers == layers
    with pytest.raises(TypeError, match="optimizer must be an xpnn Optimizer"):
        model.set(optimizer="adam")
    good = seed_model("numpy")
    good.optimizer = None
    with pytest.raises(ValueError, match="no optimizer"):
        good.train(X_GOOD, Y_GOOD)


def test_set_parameters_checks_everything_first(model):
    before = model.get_parameters()
    wrong = [(w, b) for w, b in before]
    wrong[1] = (np.zeros((64, 4)), wrong[1][1])
    with pytest.raises(ValueError, match=r"parameters\[1\] weights .* must have shape \(64, 3\)"):
        model.set_parameters(wrong)
    with pytest.raises(ValueError, match="must hold 2 entries"):
        model.set_parameters(before[:1])
    nan = [(np.full_like(w, np.nan), b) for w, b in before]
    with pytest.raises(ValueError, match="NaN"):
        model.set_parameters(nan)
    for a, b in zip(before, model.get_parameters()):
        np.testing.assert_array_equal(a[0], b[0])


def test_arrays_of_another_device_library_are_refused(model):
    if model.backend.name == "numpy":
        pytest.skip("a NumPy model takes host arrays, which is what NumPy's are")
    numpy_model = seed_model("numpy")
    on_device = model.backend.asarray(X_GOOD)
    with pytest.raises(TypeError, match=r"X is a .* array .* pass host \(NumPy\) data"):
        numpy_model.train(on_device, Y_GOOD, verbose=False)
    # Host arrays handed to a device model are moved, which is always safe.
    model.train(X_GOOD, Y_GOOD, verbose=False)
