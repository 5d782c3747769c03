"""Model.save / Model.load and train(checkpoint=...): a stopped run carries on exactly."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import press_ctrl_c_at_step, spiral, tolerance

import xpnn


def _model(backend):
    model = xpnn.Model(backend=backend, seed=3)
    model.add(xpnn.Dense(2, 32, weight_regularizer_l2=1e-4))
    model.add(xpnn.ReLU())
    model.add(xpnn.Dropout(0.1))
    model.add(xpnn.Dense(32, 3))
    model.add(xpnn.Softmax())
    model.set(
        loss=xpnn.CategoricalCrossentropy(),
        optimizer=xpnn.Adam(learning_rate=0.02, decay=1e-3),
        accuracy=xpnn.CategoricalAccuracy(),
    )
    model.finalize()
    return model


def _params(model):
    return [a for pair in model.get_parameters() for a in pair]


def test_resume_from_a_checkpoint_is_exact(backend, tmp_path):
    X, y = spiral(60, 3)
    path = tmp_path / "run.xpnn"
    whole = _model(backend)
    expected = whole.train(X, y, epochs=7, batch_size=32, print_every=1, verbose=False)

    first = _model(backend)
    first.train(X, y, epochs=4, batch_size=32, checkpoint=path, checkpoint_every=2, verbose=False)
    resumed = xpnn.Model.load(path, backend=backend)
    assert resumed.epochs_trained == 4
    rest = resumed.train(X, y, epochs=3, batch_size=32, print_every=1, verbose=False)

    assert rest["epoch"] == [5, 6, 7]
    # The run that wrote the checkpoint, going on, ends bit for bit where the resumed one does.
    first.train(X, y, epochs=3, batch_size=32, verbose=False)
    for a, b in zip(_params(first), _params(resumed)):
        np.testing.assert_array_equal(a, b)
    if backend == "cupy":
        return  # each save reseeds CuPy's Dropout generator, whose state cannot be read (README)
    assert rest["loss"] == expected["loss"][4:]  # as if it had never stopped, bit for bit
    for a, b in zip(_params(whole), _params(resumed)):
        np.testing.assert_array_equal(a, b)


def test_checkpoint_every_writes_on_schedule(tmp_path, monkeypatch):
    X, y = spiral(30, 3)
    saved = []
    model = _model("numpy")
    monkeypatch.setattr(model, "_checkpoint", lambda path: saved.append(model.epochs_trained))
    model.train(X, y, epochs=7, checkpoint=tmp_path / "c", checkpoint_every=3, verbose=False)
    assert saved == [3, 6, 7]


def test_ctrl_c_writes_a_checkpoint_first(tmp_path, monkeypatch):
    X, y = spiral(60, 3)
    path = tmp_path / "run.xpnn"
    model = _model("numpy")
    press_ctrl_c_at_step(model, 5, monkeypatch)
    model.train(
        X, y, epochs=10, batch_size=64, checkpoint=path, checkpoint_every=100, verbose=False
    )
    assert model.optimizer.iterations == 5
    loaded = xpnn.Model.load(path)
    assert loaded.optimizer.iterations == 5 and loaded.epochs_trained == 1
    for a, b in zip(_params(model), _params(loaded)):
        np.testing.assert_array_equal(a, b)


def test_save_and_load_across_backends(backend, tmp_path):
    X, y = spiral(30, 3)
    model = _model(backend)
    model.train(X, y, epochs=2, verbose=False)
    model.save(tmp_path / "model.xpnn")
    on_numpy = xpnn.Model.load(tmp_path / "model.xpnn")
    assert on_numpy.backend.name == "numpy"
    # Another library's products round differently: float32 tolerance.
    np.testing.assert_allclose(
        xpnn.to_numpy(on_numpy.predict(X)), xpnn.to_numpy(model.predict(X)), **tolerance("float32")
    )
    model.save_parameters(tmp_path / "params.xpnn")
    fresh = _model("numpy")
    fresh.load_parameters(tmp_path / "params.xpnn")
    for a, b in zip(_params(model), _params(fresh)):
        np.testing.assert_array_equal(a, b)


def test_checkpoint_arguments_are_checked(tmp_path):
    X, y = spiral(30, 3)
    model = _model("numpy")
    with pytest.raises(ValueError, match="checkpoint: the folder"):
        model.train(X, y, checkpoint=tmp_path / "missing" / "c.xpnn", verbose=False)
    with pytest.raises(TypeError, match="checkpoint must be a file path"):
        model.train(X, y, checkpoint=3, verbose=False)
    with pytest.raises(ValueError, match="checkpoint_every"):
        model.train(X, y, checkpoint=tmp_path / "c", checkpoint_every=0, verbose=False)
    assert model.optimizer.iterations == 0
    with pytest.raises(xpnn.XpnnFileError, match="cannot load"):
        xpnn.Model.load(tmp_path / "nothing-here.xpnn")
