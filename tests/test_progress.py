"""What train shows, the History it returns, its plot, and early stopping."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import seed_model, spiral

import xpnn


@pytest.fixture(scope="module")
def data():
    return spiral(100, 3)


def test_lines_when_not_a_terminal(capsys, data):
    model = seed_model("numpy", seed=0)
    model.train(*data, epochs=4, print_every=2)  # pytest's stdout is not a terminal
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("xpnn: training on numpy")
    assert [line.split(",")[0] for line in out[1:]] == ["epoch: 2", "epoch: 4"]


def test_bar_shows_epochs_and_the_last_report(capsys, data):
    model = seed_model("numpy", seed=0)
    model.train(*data, epochs=6, print_every=3, verbose="bar")
    captured = capsys.readouterr()
    assert "epoch: " not in captured.out  # no book lines under a bar
    assert "6/6" in captured.err and "epoch" in captured.err
    assert "loss=" in captured.err and "acc=" in captured.err


@pytest.mark.parametrize("verbose", ["lines", "bar", False])
def test_a_compile_is_said_once_beside_the_lines(capsys, data, monkeypatch, verbose):
    """numba compiling a kernel during a run (as a first run does) is said once, on stderr,
    so the printed lines stay the reports; silent runs say nothing."""
    from xpnn.backends import jit
    from xpnn.training import loop

    original = loop.Trainer.epoch

    def epoch(self, number, interrupt):
        jit.compiling()  # what the disk cache calls as a kernel starts compiling
        jit.compiling()
        return original(self, number, interrupt)

    monkeypatch.setattr(loop.Trainer, "epoch", epoch)
    seed_model("numpy", seed=0).train(*data, epochs=2, print_every=1, verbose=verbose)
    out, err = capsys.readouterr()
    assert loop.COMPILING not in out
    assert err.count(loop.COMPILING) == (1 if verbose else 0)


def test_silent_and_bad_verbose(capsys, data):
    model = seed_model("numpy", seed=0)
    model.train(*data, epochs=3, verbose=False)
    assert capsys.readouterr() == ("", "")
    with pytest.raises(ValueError, match="verbose must be"):
        model.train(*data, verbose="loud")


def test_history_figures(backend, data):
    X, y = data
    model = seed_model(backend, seed=0)
    history = model.train(X, y, epochs=5, print_every=2, validation_data=(X, y), verbose=False)
    assert history["epoch"] == [1, 2, 3, 4, 5]
    seconds = history["seconds"]
    assert seconds == sorted(seconds) and seconds[0] > 0
    assert history.as_dict()["loss"] == history["loss"]
    # A second call goes on counting epochs.
    assert model.train(X, y, epochs=2, verbose=False)["epoch"] == [6, 7]


def test_validation_every_epoch(backend, data):
    """Every epoch gets the validation figures that evaluate gives after it, as in Keras."""
    X, y = data
    X_val, y_val = X[::4], y[::4]
    model = seed_model(backend, seed=0)
    history = model.train(
        X, y, epochs=5, print_every=2, validation_data=(X_val, y_val), verbose=False
    )
    one_by_one = seed_model(backend, seed=0)
    for epoch in range(5):
        one_by_one.train(X, y, epochs=1, verbose=False)  # the same shuffles, epoch by epoch
        result = one_by_one.evaluate(X_val, y_val)
        assert history["val_loss"][epoch] == pytest.approx(result["loss"], rel=1e-5)
        assert history["val_data_loss"][epoch] == pytest.approx(result["data_loss"], rel=1e-5)
        assert history["val_accuracy"][epoch] == pytest.approx(result["accuracy"], abs=1e-9)
    assert len(set(history["val_loss"])) == 5  # it learns: each epoch's figure differs


def test_plot_writes_a_png(tmp_path, data):
    X, y = data
    model = seed_model("numpy", seed=0)
    history = model.train(X, y, epochs=20, print_every=5, validation_data=(X, y), verbose=False)
    path = history.plot(tmp_path / "curves.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000  # three panels of curves, not an empty canvas
    with pytest.raises(ValueError, match="empty"):
        xpnn.History().plot(tmp_path / "empty.png")
    written = history.plot(str(tmp_path / "no-suffix"))  # as matplotlib writes it: a .png
    assert written == tmp_path / "no-suffix.png" and written.is_file()
    with pytest.raises(ValueError, match="is a folder"):
        history.plot(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"the folder .*missing.* does not exist"):
        history.plot(tmp_path / "missing" / "curves.png")
    with pytest.raises(TypeError, match="path must be a file path"):
        history.plot(3)


def test_early_stopping_restores_the_best(backend):
    """Memorising 30 noisy samples: the validation loss bottoms out, then rises."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(30, 2)), rng.integers(0, 3, 30)
    X_val, y_val = rng.normal(size=(300, 2)), rng.integers(0, 3, 300)
    model = xpnn.Model(backend=backend, seed=0, dtype="float64")
    model.add(xpnn.Dense(2, 64))
    model.add(xpnn.ReLU())
    model.add(xpnn.Dense(64, 3))
    model.add(xpnn.Softmax())
    model.set(loss=xpnn.CategoricalCrossentropy(), optimizer=xpnn.Adam(learning_rate=0.02))
    model.finalize()
    history = model.train(
        X, y, epochs=500, validation_data=(X_val, y_val), early_stopping=10, verbose=False
    )
    val = history["val_loss"]
    best = int(np.argmin(val))
    assert len(history) == best + 11 < 500  # stopped 10 epochs after the best
    assert model.evaluate(X_val, y_val)["loss"] == pytest.approx(val[best], rel=1e-9)
    with pytest.raises(ValueError, match="early_stopping watches the validation loss"):
        model.train(X, y, early_stopping=3, verbose=False)
    with pytest.raises(ValueError, match="early_stopping"):
        model.train(X, y, early_stopping=0, validation_data=(X_val, y_val), verbose=False)


def test_history_names_what_it_does_not_keep():
    history = xpnn.History()
    history.append(epoch=1, loss=0.5)
    assert "loss" in history and "acc" not in history and list(history)[:2] == ["epoch", "loss"]
    with pytest.raises(KeyError, match=r"no figure 'acc'; it keeps \['epoch', 'loss'"):
        history["acc"]
    with pytest.raises(ValueError, match=r"no figure \['acurracy'\]"):
        history.append(epoch=2, acurracy=0.9)  # misspelled: once dropped without a word
    with pytest.raises(TypeError, match=r"loss must be a real number; got '0\.4'"):
        history.append(epoch=2, loss="0.4")
    assert len(history) == 1  # nothing added by a refused epoch
