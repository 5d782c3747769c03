"""Single rows and columns in the compiled epoch: ``numpy_blas.product`` against NumPy's ``dot``
for every shape class its dispatch tells apart (a 1 x 1 operand, a row, a column, an outer
product, transposed operands), and models of one output, one input feature, one hidden unit
and batches of one row trained both ways (XPNN_JIT_EPOCH=1, then 0): the same numbers bit for
bit, and the compiled path ran."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from helpers import spiral

import xpnn

pytest.importorskip("numba", reason="the compiled epoch needs numba (the jit extra)")

from test_compiled_epoch import _model, runs  # noqa: F401
from test_compiled_layers import _output_model, _run

from xpnn.backends import numpy_blas

X, Y = spiral(100, 3)
#: One regression target and one yes/no target per sample.
TARGET = np.sin(X @ np.array([[1.5], [-2.0]]))
YES = (Y == 1).astype(float)[:, None]
FIRST = np.ascontiguousarray(X[:, :1])  # one input feature, in C order
#: Sizes where OpenBLAS's kernels differ: rows and columns (m, n), and the inner size (k).
OUTER, INNER = (1, 2, 5, 64, 257), (1, 2, 3, 17, 300)


def _bits(a):
    """``a``'s bytes: equal arrays of equal bits (a zero's sign, NaN's payload included)."""
    return np.ascontiguousarray(a).tobytes()


def _check(a, b, trans_a, trans_b):
    """``numpy_blas.product`` of ``a`` and ``b`` (transposed where asked) is ``np.dot``'s."""
    left, right = (a.T if trans_a else a), (b.T if trans_b else b)
    expected = np.dot(left, right)
    out = np.full(expected.shape, np.nan, a.dtype)  # not NumPy's zeros: written in full
    numpy_blas.product(a, b, out, trans_a, trans_b)
    assert out.dtype == expected.dtype
    assert _bits(out) == _bits(expected), (left.shape, right.shape, trans_a, trans_b)


@pytest.fixture(scope="module")
def blas():
    assert numpy_blas.load() is None


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("transposed", list(itertools.product([False, True], repeat=2)))
def test_products_of_every_shape_equal_numpys_dot(blas, dtype, transposed):
    """m x k times k x n for m, n and k of 1 and more: gemm, gemv both ways, dot, axpy and
    a plain multiply, as NumPy chooses them, bit for bit."""
    rng = np.random.default_rng(0)
    trans_a, trans_b = transposed
    for m, k, n in itertools.product(OUTER, INNER, OUTER):
        a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
        b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
        _check(a, b, trans_a, trans_b)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_products_of_signed_zeros_and_special_values(blas, dtype):
    """Zeros of both signs, infinities and NaN through each routine: a zero's sign where NumPy
    adds to 0.0 (axpy into zeros, a vector dot's float64 sum) is NumPy's."""
    values = np.array([-0.0, 0.0, -1.5, 2.0, np.inf, -np.inf, np.nan], dtype)
    rng = np.random.default_rng(1)
    for m, k, n in itertools.product((1, 2, 5), (1, 2, 3), (1, 2, 5)):
        for trans_a, trans_b in itertools.product([False, True], repeat=2):
            for _ in range(12):
                a = rng.choice(values, (k, m) if trans_a else (m, k))
                b = rng.choice(values, (n, k) if trans_b else (k, n))
                with np.errstate(invalid="ignore"):
                    _check(a, b, trans_a, trans_b)
    zeros = np.array([[-0.0]], dtype)
    _check(zeros, np.array([[3.0, 2.0]], dtype), False, False)  # axpy: 0 + (-0) is +0
    _check(np.array([[-1.0, 0.0]], dtype), np.array([[0.0], [-0.0]], dtype), False, False)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_bias_gradient_through_a_view_of_ones(blas, dtype):
    """A row of ones (a view of the first ``rows`` of a longer one, as the compiled epoch
    slices it) times the gradient is ``Backend.sum_rows``'s ``dot``, for 1 row or column too."""
    rng = np.random.default_rng(2)
    ones = np.ones(300, dtype)
    for rows, columns in itertools.product((1, 2, 5, 64, 257), (1, 2, 5, 64)):
        gradient = rng.standard_normal((rows, columns)).astype(dtype)
        _check(ones[:rows].reshape(1, rows), gradient, False, False)


def _chain(backend, dtype, layers, output, loss, metric):
    """A model of ``layers``, then ``output`` (None: none) with ``loss`` and ``metric``."""
    model = xpnn.Model(backend=backend, dtype=dtype, seed=3)
    for layer in [*layers, *([] if output is None else [output])]:
        model.add(layer)
    model.set(loss=loss, optimizer=xpnn.Adam(learning_rate=0.02, decay=1e-3), accuracy=metric)
    model.finalize()
    return model


ONE_OUTPUT = {  # output layer, loss, metric, targets
    "Linear-MSE": (xpnn.Linear, xpnn.MeanSquaredError, xpnn.RegressionAccuracy, TARGET),
    "Linear-MAE": (xpnn.Linear, xpnn.MeanAbsoluteError, xpnn.RegressionAccuracy, TARGET),
    "none-MSE": (None, xpnn.MeanSquaredError, xpnn.RegressionAccuracy, TARGET),
    "Sigmoid-BCE": (xpnn.Sigmoid, xpnn.BinaryCrossentropy,
                    lambda: xpnn.CategoricalAccuracy(binary=True), YES),
}  # fmt: skip


@pytest.mark.parametrize("batch_size", [32, 299, 1])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", ONE_OUTPUT)
def test_one_output(backend, dtype, case, batch_size, monkeypatch, runs):  # noqa: F811
    """A regression of one output (MSE, MAE) and a binary classifier of one Sigmoid output,
    in batches of 32 (the last of 12 rows), of 299 (the last of 1 row) and of 1 row."""
    output, loss, metric, y = ONE_OUTPUT[case]
    samples = 40 if batch_size == 1 else len(X)

    def make():
        return _output_model(backend, dtype, output, loss, metric(), 1)

    def train(model):
        return model.train(X[:samples], y[:samples], epochs=2, batch_size=batch_size,
                           verbose=False)  # fmt: skip

    on, _, _ = _run(backend, monkeypatch, runs, make, train)
    assert on["iterations"] == 2 * -(-samples // batch_size)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_one_input_feature_and_one_hidden_unit(backend, dtype, monkeypatch, runs):  # noqa: F811
    """Dense(1, 16) first (an outer product forward, a column of inputs backward), a hidden
    layer of 1 unit between two others (with a Dropout of 1 column after it), a Softmax
    output, shuffled, a last batch of 1 row."""
    d = xpnn.Dense

    def make():
        layers = [d(1, 16), xpnn.Tanh(), d(16, 1), xpnn.ReLU(), xpnn.Dropout(0.2), d(1, 8),
                  xpnn.ReLU(), d(8, 3)]  # fmt: skip
        return _model(backend, dtype, layers=layers)

    def train(model):
        return model.train(FIRST[:289], Y[:289], epochs=3, batch_size=32, verbose=False)

    on, _, _ = _run(backend, monkeypatch, runs, make, train)
    assert on["iterations"] == 30


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_line_through_one_feature_one_row_at_a_time(backend, dtype, monkeypatch, runs):  # noqa: F811
    """Dense(1, 1) alone, then Dense(1, 4) and Dense(4, 1), in batches of 1 row: every
    product a 1 x 1 operand (NumPy's plain multiply and axpy)."""
    x, y = FIRST[:50], TARGET[:50]
    for widths in ([1], [4, 1]):

        def make(widths=widths):
            d = xpnn.Dense
            chain = [d(1, 1)] if widths == [1] else [d(1, 4), xpnn.ReLU(), d(4, 1)]
            return _chain(backend, dtype, chain, None, xpnn.MeanSquaredError(),
                          xpnn.RegressionAccuracy())  # fmt: skip

        def train(model):
            return model.train(x, y, epochs=2, batch_size=1, verbose=False)

        on, _, _ = _run(backend, monkeypatch, runs, make, train)
        assert on["iterations"] == 100


def test_a_softmax_model_with_a_last_batch_of_one_row(backend, monkeypatch, runs):  # noqa: F811
    """The spiral model, shuffled, in batches of 32 from 289 samples (the last of 1 row), and
    of 2 from 129 (the second compiled call of each epoch: one step of 1 row)."""

    def make():
        return _model(backend, "float64")

    for samples, batch in ((289, 32), (129, 2)):

        def train(model, samples=samples, batch=batch):
            return model.train(X[:samples], Y[:samples], epochs=2, batch_size=batch,
                               verbose=False)  # fmt: skip

        on, _, _ = _run(backend, monkeypatch, runs, make, train)
        assert on["iterations"] == 2 * -(-samples // batch)
