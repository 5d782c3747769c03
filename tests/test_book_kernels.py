"""The compiled passes of ``xpnn.book`` on NumPy (``xpnn/book/_kernels.py``) against the book's
NumPy lines, bit for bit: products as ``np.dot`` (and as ``nnfs.init()``'s ``dot``) gives them,
sums in NumPy's order, the softmax, the loss and the gradients.

They compute on NumPy alone (the book's objects take them only there), so they are called
directly, as tests/test_jit.py calls the backend's kernels.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba", reason="the compiled passes need numba (the jit extra)")

from xpnn.backends import numpy_blas
from xpnn.book import _lean
from xpnn.book._kernels import KERNELS
from xpnn.book._lean import ORDERED, OWN, WIDE

if numpy_blas.load() is not None:  # pragma: no cover - NumPy with another BLAS
    pytest.skip("NumPy's BLAS is not its wheels' OpenBLAS", allow_module_level=True)

DTYPES = ["float32", "float64"]


@pytest.fixture(params=DTYPES)
def dtype(request) -> str:
    return request.param


def kernel(name: str):
    return KERNELS[name].dispatcher()


def values(rng, shape, dtype):
    """Normal numbers spread over six orders of magnitude, so any other summation order
    shows in the last bits."""
    return (rng.standard_normal(shape) * 10 ** rng.uniform(-3, 3, shape)).astype(dtype)


def same(a, b) -> bool:
    """Equal bit for bit, the sign of zero included."""
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


SIZES = [*range(1, 140), 255, 256, 257, 1000, 1024, 4099, 8192, 8193, 100_003]


def test_a_vectors_sum_is_numpys_pairwise_sum(dtype):
    """``np.sum(-logs)`` (the loss's mean before the division) for every size across NumPy's
    pairwise thresholds (8, 128, the halving beyond), and -0.0 summed to 0.0 as NumPy does."""
    rng = np.random.default_rng(0)
    negated_sum = kernel("negated_sum")
    for n in SIZES:
        logs = values(rng, n, dtype)
        assert same(logs.dtype.type(negated_sum(logs)), np.sum(-logs)), n
    zeros = np.array([0.0, -0.0, 0.0], dtype)
    assert same(zeros.dtype.type(negated_sum(zeros)), np.sum(-zeros))


@pytest.mark.parametrize("classes", [1, 2, 3, 7, 8, 9, 16, 33, 129, 300])
def test_softmax_rows_loss_and_gradient_are_the_books(dtype, classes):
    """The shift by each row's maximum, NumPy's ``exp``, the division by each row's (pairwise)
    sum, the clipped confidence of each label, and ``(probs - one_hot) / n``: the book's
    lines, bit for bit, for narrow rows and wide ones."""
    rng = np.random.default_rng(classes)
    rows = 57
    inputs = (4 * rng.standard_normal((rows, classes))).astype(dtype)
    labels = rng.integers(0, classes, rows).astype(np.uint8 if classes < 256 else np.int64)
    exp_values = np.exp(inputs - np.max(inputs, axis=1, keepdims=True))
    probabilities = exp_values / np.sum(exp_values, axis=1, keepdims=True)
    clipped = np.clip(probabilities, 1e-7, 1 - 1e-7)[range(rows), labels]
    output = np.empty_like(inputs)
    kernel("shift_rows")(inputs, output)
    np.exp(output, out=output)
    confidences = np.empty(rows, dtype)
    assert kernel("normalize_take")(output, labels, 1e-7, confidences)
    assert same(output, probabilities)
    assert same(confidences, clipped)
    dinputs = np.empty_like(probabilities)
    assert kernel("crossentropy_backward")(probabilities, labels, dinputs)
    expected = probabilities.copy()
    expected[range(rows), labels] -= 1
    assert same(dinputs, expected / rows)


def test_labels_outside_the_classes_are_left_to_numpy(dtype):
    """A label outside ``[0, classes)`` (the book's fancy index wraps a negative one, or
    raises) makes the passes decline without writing: the general path then runs."""
    probabilities = np.full((3, 4), 0.25, dtype)
    for bad in ([0, 4, 1], [0, -1, 1]):
        labels = np.array(bad)
        confidences = np.full(3, 7.0, dtype)
        assert not kernel("normalize_take")(probabilities.copy(), labels, 1e-7, confidences)
        assert np.all(confidences == 7.0)
        dinputs = np.full((3, 4), 7.0, dtype)
        assert not kernel("crossentropy_backward")(probabilities, labels, dinputs)
        assert np.all(dinputs == 7.0)


def nnfs_dot(a, b):
    """``nnfs.init()``'s ``np.dot``: the operands in float64, the product rounded to float32."""
    return np.dot(a.astype("float64"), b.astype("float64")).astype("float32")


@pytest.mark.parametrize(("rows", "n_inputs", "n_neurons"), [
    (128, 2, 64), (56, 2, 64), (128, 64, 3), (5, 3, 2), (2, 2, 2), (300, 64, 64), (7, 1, 9),
    (1, 2, 5), (4, 2, 1), (2, 5, 3),
])  # fmt: skip
@pytest.mark.parametrize("wide", [False, True], ids=["dot", "nnfs-dot"])
def test_dense_passes_are_the_books_products_and_sums(dtype, rows, n_inputs, n_neurons, wide):
    """``np.dot(inputs, weights) + biases``, ``np.dot(inputs.T, dvalues)``,
    ``np.sum(dvalues, axis=0, keepdims=True)`` and ``np.dot(dvalues, weights.T)``, with
    NumPy's ``dot`` or nnfs's (float64 products rounded to float32; sums of two terms
    without BLAS), bit for bit, each product in the mode ``_lean.wide_mode`` gives its shape
    (nnfs's products summed in order where this machine's BLAS sums them so); shapes for which
    NumPy takes another routine than a matrix product (a single row or column) are declined,
    except nnfs's sums of two products, which every routine rounds alike."""
    if wide and dtype == "float64":
        pytest.skip("nnfs's dot meets float32 layers (float64 ones take the general path)")
    rng = np.random.default_rng(rows * 1000 + n_inputs * 10 + n_neurons)
    inputs = values(rng, (rows, n_inputs), dtype)
    weights = values(rng, (n_inputs, n_neurons), dtype)
    biases = values(rng, (1, n_neurons), dtype)
    dvalues = values(rng, (rows, n_neurons), dtype)
    dot = nnfs_dot if wide else np.dot
    two_terms = wide and n_inputs == 2

    def mode(m, k, n, trans_a, trans_b):
        return _lean.wide_mode(wide, m, k, n, trans_a, trans_b)

    output = np.empty((rows, n_neurons), dtype)
    done = kernel("dense_forward")(
        inputs, weights, biases, output, mode(rows, n_inputs, n_neurons, False, False)
    )
    assert done == (two_terms or min(rows, n_inputs, n_neurons) >= 2)
    if done:
        assert same(output, dot(inputs, weights) + biases)
    dweights = np.empty((n_inputs, n_neurons), dtype)
    dbiases = np.empty((1, n_neurons), dtype)
    done = kernel("dense_backward")(
        inputs, dvalues, dweights, dbiases, mode(n_inputs, rows, n_neurons, True, False)
    )
    assert done == ((wide and rows == 2) or min(rows, n_inputs, n_neurons) >= 2)
    if done:
        assert same(dweights, dot(inputs.T, dvalues))
        assert same(dbiases, np.sum(dvalues, axis=0, keepdims=True))
    dinputs = np.empty((rows, n_inputs), dtype)
    done = kernel("input_gradient")(
        dvalues, weights, dinputs, mode(rows, n_neurons, n_inputs, False, True)
    )
    assert done == ((wide and n_neurons == 2) or min(rows, n_inputs, n_neurons) >= 2)
    if done:
        assert same(dinputs, dot(dvalues, weights.T))


def test_arrays_not_laid_out_as_blas_takes_them_are_declined(dtype):
    """A strided view (not C-ordered) is declined, nothing written: NumPy copies it first."""
    rng = np.random.default_rng(1)
    inputs = values(rng, (8, 12), dtype)[:, ::2]
    weights = values(rng, (6, 4), dtype)
    output = np.full((8, 4), 7.0, dtype)
    assert not kernel("dense_forward")(inputs, weights, np.zeros((1, 4), dtype), output, OWN)
    assert np.all(output == 7.0)


def summed_in_order(a, b):
    """``a @ b`` of float32 operands, each product in float64 (exact) and each output's
    products added one after the other from 0.0: the order the kernels' ``ORDERED`` keeps."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    total = np.zeros((a.shape[0], b.shape[1]))
    for term in range(a.shape[1]):
        total = total + a[:, term : term + 1] * b[term : term + 1, :]
    return total


@pytest.mark.parametrize(("m", "k", "n"), [
    (128, 64, 3), (64, 128, 3), (2, 128, 64), (128, 3, 64), (56, 64, 3), (9, 7, 8),
    (13, 5, 7), (2, 2, 2), (3, 300, 17),
])  # fmt: skip
@pytest.mark.parametrize("trans_a", [False, True], ids=["a", "a.T"])
@pytest.mark.parametrize("trans_b", [False, True], ids=["b", "b.T"])
def test_ordered_products_add_each_outputs_terms_in_order(m, k, n, trans_a, trans_b):
    """The kernels' own float64 sum of float32 products, along output rows (8 columns or more)
    and down output columns (fewer), from operands laid out either way, against the same
    additions made one term at a time by NumPy; into a float64 output and rounded into a
    float32 one."""
    rng = np.random.default_rng(m * k * n)
    a = values(rng, (k, m) if trans_a else (m, k), "float32")
    b = values(rng, (n, k) if trans_b else (k, n), "float32")
    expected = summed_in_order(a.T if trans_a else a, b.T if trans_b else b)
    product = kernel("ordered_product")
    wide = np.empty((m, n), np.float64)
    product(a, b, wide, trans_a, trans_b)
    assert same(wide, expected)
    narrow = np.empty((m, n), np.float32)
    product(a, b, narrow, trans_a, trans_b)
    assert same(narrow, expected.astype(np.float32))


def test_nnfs_products_are_summed_in_order_only_where_blas_sums_them_so(monkeypatch):
    """``wide_mode`` asks NumPy's BLAS once per shape: a BLAS adding the terms in another
    order (here: last to first) keeps every shape on BLAS, one adding them in order lets the
    small narrow ones be summed in order, never one past ``ORDERED_LIMIT`` or wide on every
    side; the answer is kept."""
    calls = []

    def backwards(a, b):
        calls.append(a.shape)
        return summed_in_order(a[:, ::-1], b[::-1, :])

    def in_order(a, b):
        calls.append(a.shape)
        return summed_in_order(a, b)

    monkeypatch.setattr(_lean, "_modes", {})
    monkeypatch.setattr(_lean, "_numpy_dot", backwards)
    assert _lean.wide_mode(True, 64, 128, 3, True, False) == WIDE
    assert calls  # asked
    monkeypatch.setattr(_lean, "_modes", {})
    monkeypatch.setattr(_lean, "_numpy_dot", in_order)
    assert _lean.wide_mode(True, 64, 128, 3, True, False) == ORDERED
    asked = len(calls)
    assert _lean.wide_mode(True, 64, 128, 3, True, False) == ORDERED
    assert len(calls) == asked  # kept, not asked again
    big = _lean.ORDERED_LIMIT + 1
    assert _lean.wide_mode(True, big, 1, 1, False, False) == WIDE
    assert len(calls) == asked  # too large to sum in order: BLAS, without asking
    assert _lean.wide_mode(True, 64, 64, 16, False, False) == WIDE
    assert len(calls) == asked  # many terms, rows and columns: BLAS, without asking
    assert _lean.wide_mode(False, 64, 128, 3, True, False) == OWN


@pytest.mark.parametrize(("m", "k", "n"), [
    (128, 64, 3), (64, 128, 3), (2, 128, 64), (128, 3, 64), (3, 9, 5), (7, 9, 5), (5, 17, 5),
    (17, 9, 5), (2, 300, 3), (33, 9, 5),
])  # fmt: skip
@pytest.mark.parametrize(("trans_a", "trans_b"), [(False, False), (True, False), (False, True)])
def test_the_products_summed_in_order_are_this_machines_blas_products(m, k, n, trans_a, trans_b):
    """Where ``wide_mode`` sums nnfs's products in order, NumPy's float64 ``dot`` gives the
    same numbers on fresh operands; shapes where OpenBLAS's kernels add some terms apart (an
    odd tail, past 256 terms) are among them, so a probe that let those through fails here."""
    if _lean.wide_mode(True, m, k, n, trans_a, trans_b) != ORDERED:
        return  # BLAS computes it, as NumPy does: nothing of the kernels' own to compare
    rng = np.random.default_rng(7)
    for _ in range(6):
        a = _lean._spread(rng, (k, m) if trans_a else (m, k))
        b = _lean._spread(rng, (n, k) if trans_b else (k, n))
        expected = np.dot(
            (a.T if trans_a else a).astype("float64"), (b.T if trans_b else b).astype("float64")
        )
        summed = np.empty((m, n), np.float64)
        kernel("ordered_product")(a, b, summed, trans_a, trans_b)
        assert same(summed, expected)


def test_relu_and_its_gradient_are_the_books(dtype):
    """``np.maximum(0, x)`` (NaN kept; the sign of a zero is not compared: NumPy's vector
    and scalar loops differ there) and ``dvalues.copy()`` zeroed where ``inputs <= 0`` (a NaN
    input keeps its gradient, as the book's mask does)."""
    rng = np.random.default_rng(2)
    inputs = values(rng, (33, 17), dtype)
    inputs[0, :4] = [np.nan, -0.0, 0.0, np.inf]
    dvalues = values(rng, (33, 17), dtype)
    output = np.empty_like(inputs)
    kernel("relu")(inputs, output)
    np.testing.assert_array_equal(output, np.maximum(0, inputs))
    dinputs = np.empty_like(dvalues)
    kernel("relu_backward")(dvalues, inputs, dinputs)
    expected = dvalues.copy()
    expected[inputs <= 0] = 0
    assert same(dinputs, expected)
