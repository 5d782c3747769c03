"""Model.save / Model.load and train(checkpoint=...): a stopped run carries on exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import safetensors.numpy
from helpers import press_ctrl_c_at_step, spiral, tolerance
from safetensors import safe_open

import xpnn
import xpnn.io


def _model(backend, dropout=True):
    model = xpnn.Model(backend=backend, seed=3)
    model.add(xpnn.Dense(2, 32, weight_regularizer_l2=1e-4))
    model.add(xpnn.ReLU())
    if dropout:
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
    assert rest["loss"] == expected["loss"][4:]  # as if it had never stopped, bit for bit
    for a, b in zip(_params(whole), _params(resumed)):
        np.testing.assert_array_equal(a, b)


def test_checkpoint_every_writes_on_schedule(tmp_path, monkeypatch):
    X, y = spiral(30, 3)
    saved = []
    model = _model("numpy")
    monkeypatch.setattr(model, "save", lambda path: saved.append(model.epochs_trained))
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


def test_save_and_load_go_on_as_an_uninterrupted_run(backend, tmp_path):
    """Model.save keeps what a checkpoint keeps: the optimizer's steps, decayed rate and state,
    the epoch count and the generators; save_parameters keeps the weights alone."""
    X, y = spiral(60, 3)
    whole = _model(backend)
    expected = whole.train(X, y, epochs=5, batch_size=32, print_every=1, verbose=False)

    first = _model(backend)
    first.train(X, y, epochs=3, batch_size=32, verbose=False)
    first.save(tmp_path / "model.xpnn")
    loaded = xpnn.Model.load(tmp_path / "model.xpnn", backend=backend)
    assert loaded.epochs_trained == 3
    assert loaded.optimizer.iterations == first.optimizer.iterations == 3 * 6
    assert loaded.optimizer.current_learning_rate == first.optimizer.current_learning_rate
    rest = loaded.train(X, y, epochs=2, batch_size=32, print_every=1, verbose=False)
    assert rest["epoch"] == [4, 5]
    assert rest["loss"] == expected["loss"][3:]
    for a, b in zip(_params(whole), _params(loaded)):
        np.testing.assert_array_equal(a, b)

    # The book's weights-only file starts a fresh optimizer and epoch count.
    first.save_parameters(tmp_path / "weights.xpnn")
    fresh = _model(backend)
    fresh.load_parameters(tmp_path / "weights.xpnn")
    assert fresh.optimizer.iterations == 0 and fresh.epochs_trained == 0
    for a, b in zip(_params(first), _params(fresh)):
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
    with pytest.raises(ValueError, match="checkpoint_every says how often checkpoint is written"):
        model.train(X, y, checkpoint_every=5, verbose=False)  # no file would be written
    assert model.optimizer.iterations == 0 and not list(tmp_path.iterdir())
    with pytest.raises(xpnn.XpnnFileError, match="cannot load"):
        xpnn.Model.load(tmp_path / "nothing-here.xpnn")


# -- Ctrl-C inside an epoch ---------------------------------------------------------------------

# 210 samples in batches of 64: four steps an epoch (64, 64, 64, 18).
STOPS = {
    "first step": (1, True),
    "middle": (6, True),
    "last step of an epoch": (8, True),
    "unshuffled": (7, False),
}
FIGURES = ("epoch", "loss", "data_loss", "regularization_loss", "accuracy", "learning_rate")


@pytest.mark.parametrize("dropout", [False, True], ids=["plain", "dropout"])
@pytest.mark.parametrize("stop", STOPS)
def test_ctrl_c_inside_an_epoch_resumes_exactly(backend, tmp_path, monkeypatch, stop, dropout):
    """Stopped at any step, the checkpoint finishes the epoch from the next step, in the same
    order, then goes on: parameters and History as if it had never stopped, bit for bit."""
    step, shuffle = STOPS[stop]
    X, y = spiral(70, 3)
    path = tmp_path / "run.xpnn"
    settings = {"batch_size": 64, "shuffle": shuffle, "print_every": 1, "verbose": False}
    whole = _model(backend, dropout)
    expected = whole.train(X, y, epochs=4, **settings)

    stopped = _model(backend, dropout)
    press_ctrl_c_at_step(stopped, step, monkeypatch)
    first = stopped.train(X, y, epochs=4, checkpoint=path, checkpoint_every=100, **settings)
    done = stopped.epochs_trained
    assert done == step // 4 and stopped.optimizer.iterations == step
    assert (stopped.network.epoch_in_progress is None) == (step % 4 == 0)
    for figure in FIGURES:
        assert first[figure] == expected[figure][:done]

    resumed = xpnn.Model.load(path, backend=backend)
    assert resumed.epochs_trained == done and resumed.optimizer.iterations == step
    rest = resumed.train(X, y, epochs=4 - done, **settings)
    # The stopped model goes on alike, from memory.
    again = stopped.train(X, y, epochs=4 - done, **settings)
    for a, b in zip(_params(stopped), _params(resumed)):
        np.testing.assert_array_equal(a, b)
    for figure in FIGURES:
        assert again[figure] == rest[figure]
    for figure in FIGURES:
        assert rest[figure] == expected[figure][done:], figure
    for a, b in zip(_params(whole), _params(resumed)):
        np.testing.assert_array_equal(a, b)
    assert resumed.optimizer.iterations == whole.optimizer.iterations == 16
    assert resumed.rng.bit_generator.state == whole.rng.bit_generator.state


def _stopped_in_epoch_2(monkeypatch, tmp_path, backend="numpy"):
    X, y = spiral(70, 3)
    model = _model(backend)
    press_ctrl_c_at_step(model, 6, monkeypatch)
    path = tmp_path / "run.xpnn"
    model.train(X, y, epochs=4, batch_size=64, checkpoint=path, verbose=False)
    return model, path, X, y


def test_the_checkpoint_records_the_epoch_in_progress(tmp_path, monkeypatch):
    model, path, _, _ = _stopped_in_epoch_2(monkeypatch, tmp_path)
    with safe_open(str(path), framework="np") as f:
        state = json.loads(f.metadata()["state"])
        order = f.get_tensor("state.epoch_order")
    progress = state["epoch_in_progress"]
    assert state["epochs_trained"] == 1 and state["checkpoint"] == {"epoch": 1}
    assert progress["samples"] == 210 and progress["done"] == 128 and progress["steps"] == 2
    assert progress["shuffled"] is True and progress["compared"] == 128
    assert order.dtype == np.int64 and sorted(order) == list(range(210))
    np.testing.assert_array_equal(order, model.network.epoch_in_progress.order)
    loaded = xpnn.Model.load(path)
    assert float(xpnn.to_numpy(loaded.network.epoch_in_progress.loss_sum)) == float(
        xpnn.to_numpy(model.network.epoch_in_progress.loss_sum)
    )


def test_other_data_cannot_finish_an_epoch_in_progress(tmp_path, monkeypatch):
    model, _, X, y = _stopped_in_epoch_2(monkeypatch, tmp_path)
    before = _params(model)
    with pytest.raises(ValueError, match=r"X has 207 samples, but epoch 2 stopped after 128 of"):
        model.train(X[:-3], y[:-3], verbose=False)
    other = X.copy()
    other[5, 0] += 1  # as many samples, one value changed: the mix would train silently
    with pytest.raises(ValueError, match=r"X and y are not the data that epoch 2 stopped"):
        model.train(other, y, verbose=False)
    with pytest.raises(ValueError, match=r"X and y are not the data that epoch 2 stopped"):
        model.train(X, np.roll(y, 1), verbose=False)
    assert model.optimizer.iterations == 6 and model.network.epoch_in_progress is not None
    for a, b in zip(before, _params(model)):
        np.testing.assert_array_equal(a, b)
    model.discard_epoch_in_progress()
    history = model.train(X[:-3], y[:-3], batch_size=64, verbose=False)
    assert history["epoch"] == [2] and model.optimizer.iterations == 10


def _resigned(path, target, edit_state=None, edit_tensors=None):
    """``path`` with its training state and tensors edited, re-signed as a tamperer would."""
    with safe_open(str(path), framework="np") as f:
        metadata = f.metadata()
        tensors = {name: f.get_tensor(name) for name in f.keys()}
    if edit_state is not None:
        state = json.loads(metadata["state"])
        edit_state(state)
        metadata["state"] = json.dumps(state)
    if edit_tensors is not None:
        edit_tensors(tensors)
    metadata.pop("sha256")
    metadata["sha256"] = xpnn.io.format.digest(metadata, tensors)
    target.write_bytes(safetensors.numpy.save(tensors, metadata=metadata))
    return target


def _progress(**changes):
    return lambda state: state["epoch_in_progress"].update(changes)


ORDER = "state.epoch_order"
TAMPERED_PROGRESS = {
    "nothing done": (_progress(done=0), None, "done=0"),
    "all done": (_progress(done=210), None, "done=210"),
    "no steps": (_progress(steps=0), None, "steps 0"),
    "more steps than samples": (_progress(steps=129), None, "steps 129"),
    "done a string": (_progress(done="128"), None, "done='128'"),
    "loss NaN": (_progress(loss_sum=float("nan")), None, "loss_sum nan"),
    "loss a string": (_progress(loss_sum="1.5"), None, "loss_sum '1.5'"),
    "loss beyond float32": (_progress(loss_sum=1e300), None, "loss_sum 1e+300 is beyond float32"),
    "more right than compared": (_progress(correct=129), None, "correct=129"),
    "shuffled 1": (_progress(shuffled=1), None, "shuffled 1"),
    "a key missing": (
        lambda s: s["epoch_in_progress"].pop("steps"),
        None,
        "the epoch in progress must have",
    ),
    "a key more": (_progress(extra=1), None, "the epoch in progress must have"),
    "not an object": (
        lambda s: s.update(epoch_in_progress=[1, 2]),
        None,
        "the epoch in progress must be a JSON object",
    ),
    "other samples": (_progress(samples=300), None, "has shape (210,)"),
    "order missing": (None, lambda t: t.pop(ORDER), f"{ORDER!r} is missing"),
    "order float": (None, lambda t: t.update({ORDER: t[ORDER] * 1.0}), "dtype float64"),
    "order repeats": (
        None,
        lambda t: t.update({ORDER: np.zeros(210, np.int64)}),
        "is not an order of the samples",
    ),
    "order out of range": (
        None,
        lambda t: t.update({ORDER: np.arange(1, 211)}),
        "is not an order of the samples",
    ),
    "order while unshuffled": (
        _progress(shuffled=False),
        None,
        f"unexpected tensors [{ORDER!r}]",
    ),
}


@pytest.mark.parametrize("case", TAMPERED_PROGRESS)
def test_a_tampered_epoch_in_progress_is_refused(tmp_path, monkeypatch, case):
    edit_state, edit_tensors, words = TAMPERED_PROGRESS[case]
    _, path, _, _ = _stopped_in_epoch_2(monkeypatch, tmp_path)
    bad = _resigned(path, tmp_path / "bad.xpnn", edit_state, edit_tensors)
    with pytest.raises(xpnn.XpnnFileError) as excinfo:
        xpnn.Model.load(bad)
    assert words in str(excinfo.value) and str(bad) in str(excinfo.value)


def test_training_state_beyond_the_model_dtype_is_refused(tmp_path):
    """The optimizer's rate and buffers, which the loader sets itself, are checked after the
    conversion to the model's dtype: 1e300 is finite in a float64 file, inf in float32."""
    model = _model("numpy")
    model.train(*spiral(20, 3), epochs=1, verbose=False)
    path = tmp_path / "m.xpnn"
    xpnn.io.save_model(model, path, checkpoint={})
    rate = _resigned(
        path, tmp_path / "rate.xpnn", lambda s: s["optimizer"].update(current_learning_rate=1e300)
    )
    with pytest.raises(
        xpnn.XpnnFileError, match=r"current_learning_rate 1e\+300 is beyond float32"
    ):
        xpnn.Model.load(rate)
    assert xpnn.Model.load(rate, dtype="float64").optimizer.current_learning_rate == 1e300

    # A float64 checkpoint with a momentum of 1e300, loaded as float32.
    with safe_open(str(path), framework="np") as f:
        metadata = f.metadata()
        tensors = {name: f.get_tensor(name).astype(np.float64) for name in f.keys()}
    spec = json.loads(metadata["model"])
    spec["dtype"] = "float64"
    metadata["model"] = json.dumps(spec)
    tensors["optimizer.param_momentums"][0] = 1e300
    metadata.pop("sha256")
    metadata["sha256"] = xpnn.io.format.digest(metadata, tensors)
    wide = tmp_path / "wide.xpnn"
    wide.write_bytes(safetensors.numpy.save(tensors, metadata=metadata))
    assert xpnn.Model.load(wide).network.parameters.param_momentums[0] == 1e300
    with pytest.raises(
        xpnn.XpnnFileError, match=r"'optimizer\.param_momentums' holds values beyond float32"
    ):
        xpnn.Model.load(wide, dtype="float32")
