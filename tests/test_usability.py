"""What a reader of the book or a Keras user reaches for: the summary, the book's class
predictions, the report lines, evaluate's line, backend="auto"'s note, notebooks."""

from __future__ import annotations

import logging
import re
import sys
import types

import numpy as np
import pytest
from helpers import seed_model, spiral

import xpnn
from xpnn import progress


@pytest.fixture(scope="module")
def data():
    return spiral(100, 3)


def test_summary_prints_and_returns_the_table(backend, capsys):
    model = xpnn.Model(backend=backend, seed=0, dtype="float64")
    model.add(xpnn.Dense(2, 64))
    model.add(xpnn.ReLU())
    model.add(xpnn.Dropout(0.1))
    model.add(xpnn.Dense(64, 3))
    model.add(xpnn.Softmax())
    model.set(loss=xpnn.CategoricalCrossentropy(), optimizer=xpnn.Adam())
    model.finalize()
    text = model.summary()
    assert capsys.readouterr().out == text + "\n"
    assert text.splitlines()[0] == "Model: 5 layers, 2 inputs"
    rows = [line.split() for line in text.splitlines() if re.match(r"\d+ ", line)]
    assert rows == [
        ["1", "Dense(2,", "64)", "64", "192"],
        ["2", "ReLU()", "64", "0"],
        ["3", "Dropout(0.1)", "64", "0"],
        ["4", "Dense(64,", "3)", "3", "195"],
        ["5", "Softmax()", "3", "0"],
    ]
    assert "Total parameters: 387 (3.02 KiB)" in text  # 387 float64 values
    assert f"Backend: {backend} (" in text and "Dtype: float64" in text
    assert "Loss: CategoricalCrossentropy()" in text and "Accuracy" not in text
    assert "Not finalized" not in text


def test_summary_labels_show_the_changed_settings_and_repr_shows_all(capsys):
    """A row names each layer by its class and the settings that differ from their defaults
    (the required ones by value, as the book writes them), so the table stays readable now
    that ``repr`` shows every setting; the parts set below it show every setting."""
    dense = xpnn.Dense(2, 16, 0.0, 5e-4, bias_regularizer_l2=5e-4, weight_scale=0.1)
    leaky = xpnn.LeakyReLU(0.2)
    model = xpnn.Model(seed=0)
    for layer in (dense, leaky, Project(16, 5, 2), xpnn.Dense(5, 1), xpnn.Sigmoid()):
        model.add(layer)
    model.set(loss=xpnn.BinaryCrossentropy(), optimizer=xpnn.Adam(learning_rate=0.02))
    text = model.summary()
    rows = [line.split("  ")[1].strip() for line in text.splitlines() if re.match(r"\d ", line)]
    assert rows == [
        "Dense(2, 16, weight_regularizer_l2=0.0005, bias_regularizer_l2=0.0005, weight_scale=0.1)",
        "LeakyReLU(alpha=0.2)",
        "Project(16, 5, scale=2)",
        "Dense(5, 1)",
        "Sigmoid()",
    ]
    widths = [line.split()[-2] for line in text.splitlines() if re.match(r"\d ", line)]
    assert widths == ["16", "16", "5", "1", "1"]  # the user's layer's widths() says 5
    assert repr(dense).startswith("Dense(n_inputs=2, n_neurons=16, weight_regularizer_l1=0.0,")
    assert repr(leaky) == "LeakyReLU(alpha=0.2)"
    keyword = type("Keyword", (Project,), {"__init__": _keyword_init})(3, mode="fast")
    assert xpnn.summary.label(keyword) == "Keyword(3, mode='fast')"
    assert "Optimizer: Adam(learning_rate=0.02, decay=0.0, epsilon=1e-07, beta_1=0.9, " in text


def _keyword_init(self, n, *, mode, backend="numpy", dtype=None):
    """A required setting that is keyword-only: named in the label."""
    xpnn.Layer.__init__(self, backend=backend, dtype=dtype)
    self.n, self.mode = n, mode


class Project(xpnn.Layer):
    """A user's layer of fixed widths (no ``n_neurons``), with a setting that is an int."""

    def __init__(self, n_inputs, n_outputs, scale=1, *, backend="numpy", dtype=None):
        super().__init__(backend=backend, dtype=dtype)
        self.n_inputs, self.n_outputs, self.scale = n_inputs, n_outputs, scale

    @classmethod
    def widths(cls, **settings):
        return settings["n_inputs"], settings["n_outputs"]


def test_summary_before_finalize_and_large_counts(capsys):
    model = xpnn.Model(seed=0)
    model.add(xpnn.Dense(784, 512))
    model.add(xpnn.ReLU())
    model.add(xpnn.Dense(512, 10))
    text = model.summary()
    assert "401,920" in text and "5,130" in text
    assert "Total parameters: 407,050 (1.55 MiB)" in text
    assert "Not finalized yet" in text


def test_the_books_output_layer_activation(backend):
    X, y = spiral(50, 3)
    model = seed_model(backend, seed=0)
    assert isinstance(model.output_layer_activation, xpnn.Softmax)  # combined with the loss
    model.train(X, y, epochs=30, batch_size=32, verbose=False)
    outputs = model.predict(X)
    predictions = model.output_layer_activation.predictions(outputs)
    expected = np.argmax(xpnn.to_numpy(outputs), axis=1)
    np.testing.assert_array_equal(xpnn.to_numpy(predictions), expected)
    book_accuracy = float(np.mean(xpnn.to_numpy(predictions) == y))
    assert book_accuracy == pytest.approx(model.evaluate(X, y)["accuracy"], abs=1e-12)


@pytest.mark.parametrize(
    ("last", "loss", "expected"),
    [
        (xpnn.Sigmoid, xpnn.BinaryCrossentropy, lambda out: (out > 0.5).astype(float)),
        (xpnn.Linear, xpnn.MeanSquaredError, lambda out: out),
        (xpnn.ReLU, xpnn.MeanSquaredError, lambda out: out),
    ],
    ids=["sigmoid", "linear", "relu"],
)
def test_predictions_of_other_outputs(backend, last, loss, expected):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 3))
    model = xpnn.Model(backend=backend, seed=0)
    model.add(xpnn.Dense(3, 2, weight_scale=1.0))
    model.add(last())
    model.set(loss=loss(), optimizer=xpnn.SGD())
    model.finalize()
    assert model.output_layer_activation is model.layers[-1]
    outputs = model.predict(X)
    got = xpnn.to_numpy(model.output_layer_activation.predictions(outputs))
    want = expected(xpnn.to_numpy(outputs))
    np.testing.assert_array_equal(got, want)
    if last is xpnn.Sigmoid:  # both classes occur, so the threshold is really applied
        assert 0 < got.mean() < 1


def regression(scale: float) -> tuple[xpnn.Model, np.ndarray, np.ndarray]:
    X = np.linspace(0, 1, 64).reshape(-1, 1)
    y = scale * np.sin(2 * np.pi * X)
    model = xpnn.Model(seed=0)
    model.add(xpnn.Dense(1, 1))
    model.add(xpnn.Linear())
    model.set(loss=xpnn.MeanSquaredError(), optimizer=xpnn.Adam(learning_rate=1e-4))
    model.finalize()
    return model, X, y


def test_report_lines_show_small_losses_and_no_missing_accuracy(capsys):
    model, X, y = regression(scale=0.01)  # an MSE around 5e-5
    history = model.train(X, y, epochs=2, print_every=1, verbose="lines")
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith(": 64 samples, 1 step per epoch")
    for line, loss in zip(out[1:], history["loss"]):
        assert "acc" not in line and "nan" not in line
        shown = re.search(r"loss: (\S+),", line).group(1)
        assert re.fullmatch(r"\d(\.\d+)?e-0\d", shown), line  # significant digits, not 0.000
        assert float(shown) == pytest.approx(loss, rel=5e-3)
    model.evaluate(X, y, verbose=True)
    line = capsys.readouterr().out.strip()
    assert re.fullmatch(r"validation, loss: \d(\.\d+)?e-0\d", line)


def test_report_lines_with_a_metric(capsys, data):
    X, y = data
    model = seed_model("numpy", seed=0)
    history = model.train(
        X, y, epochs=2, batch_size=128, print_every=2, validation_data=(X, y), verbose="lines"
    )
    header, line = capsys.readouterr().out.splitlines()
    assert header.endswith(": 300 samples, 3 steps per epoch")
    assert line == (
        f"epoch: 2, acc: {history['accuracy'][-1]:.3f}, loss: {history['loss'][-1]:.3f}, "
        f"lr: 0.0499999, validation acc: {history['val_accuracy'][-1]:.3f}, "
        f"loss: {history['val_loss'][-1]:.3f}"
    )
    result = model.evaluate(X, y, verbose=True)
    assert capsys.readouterr().out == (
        f"validation, acc: {result['accuracy']:.3f}, loss: {result['loss']:.3f}\n"
    )
    model.evaluate(X, y)  # quiet by default
    assert capsys.readouterr().out == ""
    with pytest.raises(TypeError, match="verbose must be True or False"):
        model.evaluate(X, y, verbose="yes")


@pytest.mark.parametrize(
    ("value", "shown"),
    [(1.1634, "1.163"), (0.345, "0.345"), (0.0523, "0.0523"), (8.7e-05, "8.7e-05"), (0, "0.000")],
)
def test_number(value, shown):
    assert progress.number(value) == shown


def auto_model(monkeypatch) -> xpnn.Model:
    """A model on backend="auto" where CuPy is not installed (whatever this machine has)."""
    monkeypatch.setattr(xpnn.model, "auto_choice", lambda: ("numpy", "CuPy is not installed"))
    model = xpnn.Model(backend="auto", seed=0)
    model.add(xpnn.Dense(2, 3))
    model.add(xpnn.Softmax())
    model.set(loss=xpnn.CategoricalCrossentropy(), optimizer=xpnn.Adam())
    model.finalize()
    return model


def test_autos_choice_is_shown_once(monkeypatch, capsys, data):
    model = auto_model(monkeypatch)
    assert model.backend.name == "numpy"
    model.train(*data, epochs=1, verbose=False)  # not shown: kept for the first display
    assert capsys.readouterr().out == ""
    model.train(*data, epochs=1, verbose="lines")
    model.train(*data, epochs=1, verbose="lines")
    headers = [line for line in capsys.readouterr().out.splitlines() if "training on" in line]
    assert "backend='auto' chose it: CuPy is not installed" in headers[0]
    assert "auto" not in headers[1]
    # The summary shows it where it comes first.
    model = auto_model(monkeypatch)
    assert "chosen by backend='auto': CuPy is not installed" in model.summary()
    assert "auto" not in model.summary()


def test_autos_log_message(caplog):
    with caplog.at_level(logging.INFO, logger="xpnn"):
        name, reason = xpnn.backends.base.auto_choice()
    (record,) = [r for r in caplog.records if r.name == "xpnn"]
    assert record.getMessage() == f"backend='auto' chose {name!r}: {reason}"


def test_auto_is_chosen_and_logged_once_as_a_file_loads(caplog, tmp_path):
    model = xpnn.Model(seed=0)
    model.add(xpnn.Dense(2, 3))
    model.add(xpnn.Softmax())
    model.set(loss=xpnn.CategoricalCrossentropy(), optimizer=xpnn.Adam())
    model.finalize()
    model.save(tmp_path / "model.xpnn")
    with caplog.at_level(logging.INFO, logger="xpnn"):
        loaded = xpnn.Model.load(tmp_path / "model.xpnn", backend="auto")
    (record,) = [r for r in caplog.records if "backend='auto' chose" in r.getMessage()]
    assert f"chose {loaded.backend.name!r}" in record.getMessage()


@pytest.fixture
def notebook(monkeypatch):
    """A stand-in for a Jupyter kernel: IPython imported, its shell the ZMQ one."""

    class ZMQInteractiveShell:
        pass

    fake = types.ModuleType("IPython")
    fake.get_ipython = ZMQInteractiveShell
    monkeypatch.setitem(sys.modules, "IPython", fake)


def test_a_terminal_or_a_notebook_gets_a_bar(monkeypatch):
    monkeypatch.setitem(sys.modules, "IPython", None)
    assert not progress.in_notebook()
    assert progress.mode(True) == "lines"  # pytest's stdout is not a terminal
    terminal = types.ModuleType("IPython")
    terminal.get_ipython = lambda: type("TerminalInteractiveShell", (), {})()
    monkeypatch.setitem(sys.modules, "IPython", terminal)
    assert not progress.in_notebook()


def test_notebook_bar(notebook, monkeypatch, data):
    import tqdm
    import tqdm.notebook

    assert progress.in_notebook() and progress.mode(True) == "bar"
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # no widgets: the text bar
    assert progress.bar_class() is tqdm.tqdm
    monkeypatch.setitem(sys.modules, "ipywidgets", types.ModuleType("ipywidgets"))
    assert progress.bar_class() is tqdm.notebook.tqdm
    shown = []

    class Widget(tqdm.tqdm):  # records what the notebook bar would draw
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            shown.append(self)

    monkeypatch.setattr(tqdm.notebook, "tqdm", Widget)
    seed_model("numpy").train(*data, epochs=3, print_every=1)
    (bar,) = shown
    assert bar.n == 3 and "loss" in bar.postfix


def test_plot_without_a_path_returns_the_figure(data):
    import matplotlib
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    X, y = data
    history = seed_model("numpy").train(X, y, epochs=5, validation_data=(X, y), verbose=False)
    backend, open_figures = matplotlib.get_backend(), plt.get_fignums()
    figure = history.plot()
    assert isinstance(figure, Figure)
    loss_axis, accuracy_axis, rate_axis = figure.axes
    assert accuracy_axis.get_title() == "accuracy"
    assert [len(line.get_xdata()) for line in loss_axis.lines] == [5, 5]  # every epoch
    assert list(loss_axis.lines[0].get_ydata()) == history["loss"]
    assert len(rate_axis.lines) == 1
    # Outside pyplot: a notebook shows it once (as the cell's value), the backend unchanged.
    assert plt.get_fignums() == open_figures and matplotlib.get_backend() == backend


def test_class_labels_as_a_column_are_named_so(backend, data):
    """``y.reshape(-1, 1)`` of class labels is refused as a column, with ``y.ravel()`` offered,
    by train, evaluate and validation_data alike, before anything changes."""
    X, y = data
    model = seed_model(backend, seed=0)
    before = model.get_parameters()
    column = y.reshape(-1, 1)
    message = (
        r"^{} has shape \(300, 1\): its class labels look like a column; pass them 1-D, as "
        r"{}\.ravel\(\) gives them \(one-hot rows would have 3 columns, one per class\)$"
    )
    own = model.backend.asarray(column, dtype=model.backend.index_dtype)  # on the device
    for labels in (column, column.astype(np.float64), own):
        with pytest.raises(ValueError, match=message.format("y", "y")):
            model.train(X, labels, epochs=1, verbose=False)
        with pytest.raises(ValueError, match=message.format("y", "y")):
            model.evaluate(X, labels)
        with pytest.raises(ValueError, match=message.format(*[r"validation_data\[1\]"] * 2)):
            model.train(X, y, epochs=1, validation_data=(X, labels), verbose=False)
    for kept, now in zip(before, model.get_parameters()):
        np.testing.assert_array_equal(kept[0], now[0])
    # One-hot rows of another width keep their own message.
    with pytest.raises(ValueError, match="y is one-hot with 2 columns but the model outputs 3"):
        model.train(X, np.eye(2)[y % 2], epochs=1, verbose=False)
