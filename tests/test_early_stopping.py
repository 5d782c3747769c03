"""Early stopping: it returns the best epoch's parameters, never non-finite ones, and the last
checkpoint holds what the model holds when ``train`` returns."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import press_ctrl_c_at_step

import xpnn

# Memorising 30 noisy samples: the validation loss bottoms out at epoch 5, then rises.
RNG = np.random.default_rng(0)
X, Y = RNG.normal(size=(30, 2)), RNG.integers(0, 3, 30)
X_VAL, Y_VAL = RNG.normal(size=(90, 2)), RNG.integers(0, 3, 90)
# Finite, but beyond what the forward pass of _model(scale=1) can carry in float32: NaN loss.
X_HUGE = np.full((6, 2), 3e38)
SETTINGS = {"batch_size": 10, "print_every": 1, "verbose": False}


def _model(backend, scale=0.01, dtype="float64"):
    model = xpnn.Model(backend=backend, seed=1, dtype=dtype)
    model.add(xpnn.Dense(2, 32, weight_scale=scale))
    model.add(xpnn.ReLU())
    model.add(xpnn.Dense(32, 3, weight_scale=scale))
    model.add(xpnn.Softmax())
    model.set(
        loss=xpnn.CategoricalCrossentropy(),
        optimizer=xpnn.Adam(learning_rate=0.01),
        accuracy=xpnn.CategoricalAccuracy(),
    )
    model.finalize()
    return model


def _params(model):
    return [xpnn.to_numpy(a) for pair in model.get_parameters() for a in pair]


def _assert_same(a, b):
    for left, right in zip(_params(a), _params(b)):
        np.testing.assert_array_equal(left, right)


def _trained(backend, epochs, **kwargs):
    """The model after ``epochs`` epochs of the same run, without early stopping."""
    model = _model(backend, **kwargs)
    model.train(X, Y, epochs=epochs, **SETTINGS)
    return model


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_validation_loss_non_finite_from_the_first_epoch_keeps_the_model(backend, tmp_path):
    """Nothing finite to restore: an error naming validation_data, and the parameters the
    validation ran on, in the model and in the checkpoint."""
    path = tmp_path / "run.xpnn"
    model = _model(backend, scale=1.0, dtype="float32")
    with pytest.raises(xpnn.NonFiniteLossError, match="validation_data") as caught:
        model.train(
            X, Y, epochs=10, validation_data=(X_HUGE, Y[:6]), early_stopping=2,
            checkpoint=path, checkpoint_every=100, **SETTINGS,
        )  # fmt: skip
    assert caught.value.validation and caught.value.epoch == 1
    assert "at epoch 1" in str(caught.value) and "overflows float32" in str(caught.value)
    assert "the parameters are those of epoch 1, on which it ran" in str(caught.value)
    assert all(np.all(np.isfinite(a)) for a in _params(model))
    assert model.epochs_trained == 1
    _assert_same(model, _trained(backend, 1, scale=1.0, dtype="float32"))
    _assert_same(model, xpnn.Model.load(path, backend=backend))


@pytest.mark.parametrize("value", [np.nan, np.inf], ids=["nan", "inf"])
def test_a_validation_loss_non_finite_later_restores_the_best(backend, tmp_path, value):
    """Good epochs, then a validation loss that turns NaN or infinite at epoch 7: the best
    epoch's parameters go back, in the model and the checkpoint, and the error says so."""
    path = tmp_path / "run.xpnn"
    model = _model(backend)
    validate = xpnn.training.Trainer.validate

    def non_finite_at_epoch_7(trainer):  # a deterministic fault point
        figures = validate(trainer)
        if trainer.model.epochs_trained == 7:
            figures.data_loss = figures.data_loss * value
        return figures

    reference = _model(backend).train(X, Y, epochs=6, validation_data=(X_VAL, Y_VAL), **SETTINGS)
    best = reference["epoch"][int(np.argmin(reference["val_loss"]))]
    assert best == 5
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(xpnn.training.Trainer, "validate", non_finite_at_epoch_7)
        with pytest.raises(xpnn.NonFiniteLossError, match="validation_data") as caught:
            model.train(
                X, Y, epochs=20, validation_data=(X_VAL, Y_VAL), early_stopping=5,
                checkpoint=path, checkpoint_every=100, **SETTINGS,
            )  # fmt: skip
    assert caught.value.epoch == 7 and "the best epoch, 5, restored" in str(caught.value)
    assert model.epochs_trained == 7
    _assert_same(model, _trained(backend, best))
    loaded = xpnn.Model.load(path, backend=backend)
    _assert_same(model, loaded)
    assert loaded.epochs_trained == 7


@pytest.mark.parametrize("every", [1, 3, 100])
def test_the_last_checkpoint_holds_the_restored_best(backend, tmp_path, every):
    """Written when early stopping ends the run, whatever checkpoint_every says, after the
    restore: the file holds the model train returns."""
    path = tmp_path / "run.xpnn"
    model = _model(backend)
    history = model.train(
        X, Y, epochs=100, validation_data=(X_VAL, Y_VAL), early_stopping=3,
        checkpoint=path, checkpoint_every=every, **SETTINGS,
    )  # fmt: skip
    best = history["epoch"][int(np.argmin(history["val_loss"]))]
    assert best == 5 and history["epoch"][-1] == 8 == model.epochs_trained
    _assert_same(model, _trained(backend, best))
    loaded = xpnn.Model.load(path, backend=backend)
    _assert_same(model, loaded)
    assert loaded.epochs_trained == 8
    assert loaded.optimizer.iterations == model.optimizer.iterations == 8 * 3


@pytest.mark.parametrize("epochs", [7, 5])
def test_epochs_running_out_before_patience_still_give_the_best(backend, tmp_path, capsys, epochs):
    """Patience larger than the epochs left: the run ends at the last epoch, with the best
    epoch's parameters (the last one's where it is the best), in the model and the file."""
    path = tmp_path / "run.xpnn"
    model = _model(backend)
    history = model.train(
        X, Y, epochs=epochs, validation_data=(X_VAL, Y_VAL), early_stopping=50,
        checkpoint=path, checkpoint_every=100, **{**SETTINGS, "verbose": "lines"},
    )  # fmt: skip
    assert len(history) == epochs == model.epochs_trained
    said = "did not have the best validation loss; restored the best, epoch 5"
    assert (said in capsys.readouterr().out) == (epochs == 7)
    _assert_same(model, _trained(backend, 5))
    _assert_same(model, xpnn.Model.load(path, backend=backend))


@pytest.mark.parametrize("step", [20, 21], ids=["inside an epoch", "at an epoch's end"])
def test_ctrl_c_keeps_the_latest_parameters_and_the_checkpoint_agrees(
    backend, tmp_path, monkeypatch, step
):
    """Ctrl-C pauses (the next train goes on from where it stopped), so nothing is restored,
    even two epochs past the best; the checkpoint written then holds the same parameters."""
    path = tmp_path / "run.xpnn"
    model = _model(backend)
    press_ctrl_c_at_step(model, step, monkeypatch)  # in epoch 7 (3 steps an epoch) or its end
    model.train(
        X, Y, epochs=100, validation_data=(X_VAL, Y_VAL), early_stopping=3,
        checkpoint=path, checkpoint_every=100, **SETTINGS,
    )  # fmt: skip
    assert model.optimizer.iterations == step
    assert (model.network.epoch_in_progress is None) == (step == 21)
    _assert_same(model, xpnn.Model.load(path, backend=backend))
    unstopped = _model(backend)
    press_ctrl_c_at_step(unstopped, step, monkeypatch)
    unstopped.train(X, Y, epochs=100, **SETTINGS)
    _assert_same(model, unstopped)


def test_an_early_stop_reports_the_last_epoch_run(backend, capsys):
    """Reports come every ``print_every`` epochs and at the last: an early stop's last epoch
    is reported before the message that says why training stopped."""
    model = _model(backend)
    history = model.train(
        X, Y, epochs=100, validation_data=(X_VAL, Y_VAL), early_stopping=3,
        **{**SETTINGS, "print_every": 1000, "verbose": "lines"},
    )  # fmt: skip
    last = history["epoch"][-1]
    assert last < 100  # it stopped early
    lines = capsys.readouterr().out.splitlines()
    reported = [n for n, line in enumerate(lines) if line.startswith(f"epoch: {last},")]
    stopped = [n for n, line in enumerate(lines) if line.startswith("xpnn: early stop at")]
    assert len(reported) == 1 and len(stopped) == 1 and reported[0] < stopped[0], lines
