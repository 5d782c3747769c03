"""The compiled epoch's other layers, outputs and losses (xpnn.training.compiled_chain) against
the step path: element-wise activations between Dense layers, Dropout, and Sigmoid or
element-wise outputs with BinaryCrossentropy, MeanSquaredError, MeanAbsoluteError and their
metrics. Each test trains
the same model both ways (XPNN_JIT_EPOCH=1, then 0) and asserts the same numbers bit for bit,
and which path ran."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import spiral

import xpnn

pytest.importorskip("numba", reason="the compiled epoch needs numba (the jit extra)")

from test_compiled_epoch import (  # noqa: F401
    _assert_same,
    _both_ways,
    _compiles,
    _model,
    _train_stopped_at_step_7,
    runs,
)

from xpnn.backends import numba_sums
from xpnn.training import compiled, compiled_chain

X, Y = spiral(100, 3)
BINARY = np.c_[Y == 1, Y == 2].astype(float)  # two yes/no outputs
TARGETS = {  # regression targets of 2, 3 and 9 outputs (9: a row's mean sums pairwise)
    width: np.sin(X @ np.random.default_rng(width).standard_normal((2, width)))
    for width in (2, 3, 9)
}

ACTIVATIONS = {
    "ReLU": xpnn.ReLU,
    "LeakyReLU": lambda: xpnn.LeakyReLU(0.1),
    "Sigmoid": xpnn.Sigmoid,
    "Tanh": xpnn.Tanh,
    "Linear": xpnn.Linear,
}


def _run(backend, monkeypatch, runs, make, train):  # noqa: F811
    """``_both_ways``, with each Dropout's masks drawn compared too."""
    draws = []

    def counted(model):
        history = train(model)
        draws.append([layer.draws for layer in model.layers if type(layer) is xpnn.Dropout])
        return history

    on, off, ran = _both_ways(backend, monkeypatch, runs, make, counted)
    assert draws[0] == draws[1]
    assert bool(ran) == _compiles(backend)
    _assert_same(on, off)
    return on, ran, draws[0]


def _train(epochs=3, batch_size=64, y=Y, **settings):
    def train(model):
        return model.train(X, y, epochs=epochs, batch_size=batch_size, verbose=False, **settings)

    return train


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activations_between_dense_layers(backend, dtype, activation, monkeypatch, runs):  # noqa: F811
    """Three shuffled epochs with a partial last batch, a Softmax output."""

    def make():
        layers = [xpnn.Dense(2, 32), ACTIVATIONS[activation](), xpnn.Dense(32, 16),
                  ACTIVATIONS[activation](), xpnn.Dense(16, 3)]  # fmt: skip
        return _model(backend, dtype, layers=layers)

    on, _, _ = _run(backend, monkeypatch, runs, make, _train())
    assert on["iterations"] == 15


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_chain_of_every_activation_with_sgd(backend, dtype, monkeypatch, runs):  # noqa: F811
    d = xpnn.Dense

    def make():
        layers = [d(2, 24), xpnn.Tanh(), d(24, 20), xpnn.LeakyReLU(0.3), d(20, 16),
                  xpnn.Sigmoid(), d(16, 12), xpnn.Linear(), d(12, 8), d(8, 3)]  # fmt: skip
        return _model(backend, dtype, xpnn.SGD(0.5, decay=1e-2, momentum=0.5), layers)

    _run(backend, monkeypatch, runs, make, _train(epochs=2, batch_size=50))


def _output_model(backend, dtype, output, loss, metric, width, hidden="ReLU", optimizer=None,
                  dropout=None):  # fmt: skip
    model = xpnn.Model(backend=backend, dtype=dtype, seed=1)
    dropped = [] if dropout is None else [xpnn.Dropout(dropout)]
    for layer in [xpnn.Dense(2, 32), ACTIVATIONS[hidden](), *dropped, xpnn.Dense(32, width)]:
        model.add(layer)
    if output is not None:
        model.add(output())
    model.set(loss=loss(), optimizer=optimizer or xpnn.Adam(learning_rate=0.02, decay=1e-3),
              accuracy=metric)  # fmt: skip
    model.finalize()
    return model


OUTPUTS = {  # output layer, loss, metric, targets
    "Sigmoid-BCE-binary": (xpnn.Sigmoid, xpnn.BinaryCrossentropy,
                           lambda: xpnn.CategoricalAccuracy(binary=True), BINARY),
    "Sigmoid-BCE-no metric": (xpnn.Sigmoid, xpnn.BinaryCrossentropy, lambda: None, BINARY),
    "Sigmoid-MSE": (xpnn.Sigmoid, xpnn.MeanSquaredError, lambda: None, BINARY),
    "Tanh-MAE": (xpnn.Tanh, xpnn.MeanAbsoluteError, xpnn.RegressionAccuracy, TARGETS[3]),
    "Linear-MSE": (xpnn.Linear, xpnn.MeanSquaredError, xpnn.RegressionAccuracy, TARGETS[2]),
    "none-MSE-3": (None, xpnn.MeanSquaredError, xpnn.RegressionAccuracy, TARGETS[3]),
    "Linear-MAE-9": (xpnn.Linear, xpnn.MeanAbsoluteError,
                     lambda: xpnn.RegressionAccuracy(precision=0.05), TARGETS[9]),
    "ReLU-MSE-no metric": (xpnn.ReLU, xpnn.MeanSquaredError, lambda: None, TARGETS[3] + 1),
    "LeakyReLU-MAE": (lambda: xpnn.LeakyReLU(0.2), xpnn.MeanAbsoluteError, lambda: None,
                      TARGETS[3]),
}  # fmt: skip


@pytest.mark.parametrize("batch_size", [64, 200, None])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", OUTPUTS)
def test_outputs_and_losses(backend, dtype, case, batch_size, monkeypatch, runs):  # noqa: F811
    """Batches of 64 (partial last), 200 and all 300 rows (a batch's loss sums pairwise)."""
    output, loss, metric, y = OUTPUTS[case]
    width = y.shape[1]

    def make():
        return _output_model(backend, dtype, output, loss, metric(), width, hidden="LeakyReLU")

    on, _, _ = _run(backend, monkeypatch, runs, make, _train(batch_size=batch_size, y=y))
    assert np.isnan(on["history"]["accuracy"][0]) == (metric() is None)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dropout(backend, dtype, monkeypatch, runs):  # noqa: F811
    """Dropouts after an activation and after a bare Dense layer, over several chunks (of 4
    steps) and epochs: the same masks, drawn as many times."""
    monkeypatch.setattr(compiled, "CHUNK_STEPS", 4)
    d = xpnn.Dense

    def make():
        layers = [d(2, 32), xpnn.ReLU(), xpnn.Dropout(0.2), d(32, 16), xpnn.Dropout(0.5),
                  d(16, 16), xpnn.LeakyReLU(), d(16, 3)]  # fmt: skip
        return _model(backend, dtype, layers=layers)

    _, ran, draws = _run(backend, monkeypatch, runs, make, _train(epochs=3, batch_size=32))
    assert draws == [30, 30]
    if ran:
        assert ran == [4, 4, 2] * 3


def test_dropout_with_a_regression(backend, monkeypatch, runs):  # noqa: F811
    def make():
        return _output_model(backend, "float32", xpnn.Linear, xpnn.MeanSquaredError,
                             xpnn.RegressionAccuracy(), 3, dropout=0.3)  # fmt: skip

    _, _, draws = _run(backend, monkeypatch, runs, make, _train(y=TARGETS[3]))
    assert draws == [15]


def test_ctrl_c_inside_an_epoch_with_dropout(backend, monkeypatch, runs):  # noqa: F811
    """Ctrl-C after step 7 (the compiled path's first call): the masks drawn stop there, and
    the next train call finishes the epoch with the masks the step path draws."""

    def train(model):
        _train_stopped_at_step_7(model, backend, monkeypatch)
        assert model.optimizer.iterations == 7 and model.layers[2].draws == 7
        return model.train(X, Y, epochs=2, batch_size=32, verbose=False)

    def make():
        layers = [xpnn.Dense(2, 32), xpnn.ReLU(), xpnn.Dropout(0.25), xpnn.Dense(32, 3)]
        return _model(backend, layers=layers)

    _, ran, draws = _run(backend, monkeypatch, runs, make, train)
    assert draws == [20]
    if ran:
        assert ran == [7, 3, 7, 3]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_non_finite_loss_stops_before_its_update(backend, monkeypatch, runs):  # noqa: F811
    """A regression whose learning rate is far too large: the same error at the same step,
    the same gradients and masks drawn (up to the failed step's)."""
    errors = []

    def make():
        return _output_model(backend, "float32", xpnn.Linear, xpnn.MeanSquaredError,
                             xpnn.RegressionAccuracy(), 3, optimizer=xpnn.SGD(1e12),
                             dropout=0.3)  # fmt: skip

    def train(model):
        step = ", step" * model.backend.on_host  # elsewhere seen at the report
        with pytest.raises(xpnn.NonFiniteLossError, match="epoch 1" + step) as e:
            model.train(X, TARGETS[3] * 1e10, epochs=5, batch_size=32, verbose=False)
        errors.append(str(e.value))
        return {"loss": [], "data_loss": [], "accuracy": []}

    _run(backend, monkeypatch, runs, make, train)
    assert errors[0] == errors[1]


def test_models_still_refused(backend, monkeypatch, runs):  # noqa: F811
    """What the compiled epoch does not express runs the step path, and ``refusal`` says why."""
    d = xpnn.Dense
    refused = {
        "Dropout before an activation": [d(2, 32), xpnn.Dropout(0.1), xpnn.ReLU(), d(32, 3)],
        "two activations": [d(2, 32), xpnn.ReLU(), xpnn.Tanh(), d(32, 3)],
        "two Dropouts": [d(2, 32), xpnn.Dropout(0.1), xpnn.Dropout(0.1), d(32, 3)],
        "Dropout before the output": [d(2, 32), xpnn.ReLU(), d(32, 3), xpnn.Dropout(0.1)],
        "Dropout first": [xpnn.Dropout(0.1), d(2, 32), xpnn.ReLU(), d(32, 3)],
        "a Softmax inside": [d(2, 32), xpnn.Softmax(), d(32, 3)],
        "Dropout after Softmax": [
            d(2, 32),
            xpnn.Sigmoid(),
            xpnn.Dropout(0.1),
            d(32, 3),
            xpnn.Softmax(),
            xpnn.Dropout(0.1),
        ],
    }
    for name, layers in refused.items():
        runs.clear()
        model = _model(backend, layers=layers)
        model.train(X, Y, epochs=1, batch_size=32, verbose=False)
        assert not runs, name
        assert compiled_chain.refusal(model, True) is not None, name
    # Softmax with a loss other than cross-entropy; a metric of the user's own.
    runs.clear()
    model = _output_model(backend, "float32", xpnn.Softmax, xpnn.MeanSquaredError, None, 3)
    model.train(X, np.eye(3)[Y], epochs=1, batch_size=32, verbose=False)
    assert not runs

    class Within(xpnn.RegressionAccuracy):
        pass

    runs.clear()
    model = _output_model(backend, "float32", xpnn.Linear, xpnn.MeanSquaredError, Within(), 2)
    model.train(X, TARGETS[2], epochs=1, batch_size=32, verbose=False)
    assert not runs
    assert compiled_chain.refusal(model, False) == "Within has no compiled epoch"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_pairwise_sum_is_numpys(dtype):
    """``numba_sums.numpy_sum`` (the compiled epoch's and the book kernels' sum) adds as
    NumPy's ``sum`` adds a 1-D array (and ``mean`` each row of a 2-D one): bit for bit, over
    the sizes where its order changes (8, 128, the halves), and from an offset."""
    rng = np.random.default_rng(0)
    for n in [*range(1, 300), 1000, 1031, 4096, 8193, 20000]:
        a = (rng.standard_normal(n + 3) * rng.uniform(0, 1e3, n + 3)).astype(dtype)
        assert numba_sums.numpy_sum(a, 0, n) == np.sum(a[:n]), n
        assert numba_sums.numpy_sum(a, 3, n) == np.sum(a[3:]), n
    zeros = np.array([-0.0, -0.0], dtype)
    assert str(numba_sums.numpy_sum(zeros, 0, 2)) == str(np.sum(zeros)) == "0.0"
    for columns in (1, 3, 8, 13, 40, 129):
        a = rng.standard_normal((5, columns)).astype(dtype)
        means = [numba_sums.numpy_sum(row, 0, columns) / np.asarray(columns, dtype) for row in a]
        np.testing.assert_array_equal(np.array(means, dtype), np.mean(a, axis=-1), strict=True)
