"""The book's NumPy lines as compiled passes, for the book's objects on the numpy backend.

A step of a book script calls a dozen methods, and each ran several NumPy calls behind
several Python layers: on the notebook's small batches that overhead is most of the time.
Each kernel here does one method's work in one call, with the book's operations in the
book's order and dtypes, so the numbers are NumPy's bit for bit (tested against NumPy):

- products are NumPy's ``dot`` through NumPy's own BLAS (``numpy_blas``), with the arguments
  ``dot`` passes for 2-D operands of 2 rows and 2 columns or more; with ``wide`` (``_lean.WIDE`` or
  ``_lean.ORDERED``) they are ``nnfs.init()``'s ``dot``: the operands in float64, the product
  rounded to the output's dtype. A product of two float32 numbers is exact in float64, so
  BLAS's float64 result depends only on the order it adds the products in: where NumPy's
  BLAS adds them in order for a shape (``_lean.wide_mode`` asks it once), ``ORDERED`` sums
  them here, in that order, without widened copies or a BLAS call;
- sums follow NumPy's order: ``np.sum(a, axis=0)`` adds row after row (pairwise where ``a``
  has one column), a row's or a vector's sum is NumPy's pairwise summation;
- ``exp`` and ``log`` stay NumPy's (called between kernels): a compiled one rounds otherwise.

Each kernel that can meet arrays it was not written for returns False without writing
anything; the caller then takes the general path. Imported only where numba runs and NumPy's
BLAS is the one its wheels ship (see ``_lean``).
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from ..backends import numba_sums, numpy_blas
from ..backends.jit import Kernel
from . import _lean
from ._lean import ORDERED

__all__ = ["KERNELS"]

_blas, _not_literal = numpy_blas.product, numpy_blas.not_literal
_pairwise, _sum = numba_sums.pairwise, numba_sums.numpy_sum


def _numba(function: Any) -> Any:
    """A helper the kernels call, compiled as they are (NumPy's error model)."""
    return numba.njit(function, error_model="numpy", nogil=True)


@_numba
def _c_ordered(a):  # pragma: no cover - compiled by numba
    """True for a C-ordered 2-D array (what BLAS is handed with its row length)."""
    return a.strides[1] == a.itemsize and a.strides[0] == a.shape[1] * a.itemsize


@_numba
def _widened(a):  # pragma: no cover - compiled by numba
    """``a.astype("float64")`` for a C-ordered 2-D array."""
    rows, columns = a.shape
    out = np.empty((rows, columns), np.float64)
    for i in range(rows):
        for j in range(columns):
            out[i, j] = a[i, j]
    return out


@_numba
def _ordered(a, b, out, trans_a, trans_b):  # pragma: no cover - compiled by numba
    """``out = op(a) @ op(b)`` for C-ordered 2-D arrays, each product of two elements in
    float64 and the products of each output added in order, from 0.0; the sum rounded to
    ``out``'s dtype. Long output rows are computed along the row, short ones down the column,
    so the inner loop runs over many independent sums (vectorised) either way."""
    m = a.shape[1] if trans_a else a.shape[0]
    k = a.shape[0] if trans_a else a.shape[1]
    n = b.shape[0] if trans_b else b.shape[1]
    if n >= 8 or n >= m:
        rows = np.empty((k, n), np.float64)  # op(b), widened
        for t in range(k):
            for j in range(n):
                rows[t, j] = b[j, t] if trans_b else b[t, j]
        total = np.empty(n, np.float64)
        for i in range(m):
            total[:] = 0.0
            for t in range(k):
                x = np.float64(a[t, i] if trans_a else a[i, t])
                row = rows[t]
                for j in range(n):
                    total[j] += x * row[j]
            for j in range(n):
                out[i, j] = total[j]
        return
    if trans_a:
        columns = a  # op(a) transposed is ``a`` itself
    else:
        columns = np.empty((k, m), a.dtype)
        for i0 in range(0, m - m % 8, 8):  # 8 rows at a time: a run of 8 values written together
            for t in range(k):
                for r in range(8):
                    columns[t, i0 + r] = a[i0 + r, t]
        for i in range(m - m % 8, m):
            for t in range(k):
                columns[t, i] = a[i, t]
    total = np.empty(m, np.float64)
    for j in range(n):
        total[:] = 0.0
        for t in range(k):
            y = np.float64(b[j, t] if trans_b else b[t, j])
            column = columns[t]
            for i in range(m):
                total[i] += np.float64(column[i]) * y
        for i in range(m):
            out[i, j] = total[i]


@_numba
def _product(a, b, out, trans_a, trans_b, wide):  # pragma: no cover - compiled by numba
    """``out = op(a) @ op(b)`` as the book's ``np.dot`` gives it (see the module's notes);
    False, writing nothing, where NumPy would take another routine or the arrays do not fit."""
    m = a.shape[1] if trans_a else a.shape[0]
    k = a.shape[0] if trans_a else a.shape[1]
    k_b = b.shape[1] if trans_b else b.shape[0]
    n = b.shape[0] if trans_b else b.shape[1]
    if k != k_b or out.shape[0] != m or out.shape[1] != n:
        return False
    if wide and k == 2:
        # Two float32 products are exact in float64 and their sum is rounded once, whatever
        # the order: BLAS's result (which starts from 0.0, so a zero is 0.0), without BLAS.
        rows = np.empty((2, n), np.float64)  # op(b), widened
        for j in range(n):
            rows[0, j] = b[j, 0] if trans_b else b[0, j]
            rows[1, j] = b[j, 1] if trans_b else b[1, j]
        for i in range(m):
            x0 = np.float64(a[0, i] if trans_a else a[i, 0])
            x1 = np.float64(a[1, i] if trans_a else a[i, 1])
            for j in range(n):
                total = x0 * rows[0, j] + x1 * rows[1, j]
                out[i, j] = abs(total) if total == 0 else total
        return True
    if min(m, k, n) < 2:
        return False
    if not (_c_ordered(a) and _c_ordered(b) and _c_ordered(out)):
        return False
    if wide == ORDERED:
        _ordered(a, b, out, trans_a, trans_b)
        return True
    if wide:
        product = np.empty((m, n), np.float64)
        _blas(_widened(a), _widened(b), product, trans_a, trans_b)
        for i in range(m):
            for j in range(n):
                out[i, j] = product[i, j]
        return True
    if a.ctypes.data == b.ctypes.data:
        return False  # NumPy takes syrk for a @ a.T
    _blas(a, b, out, trans_a, trans_b)
    return True


def _dense_forward(inputs, weights, biases, output, wide):  # pragma: no cover - numba
    """The book's ``np.dot(inputs, weights) + biases`` into ``output``."""
    no = _not_literal(False)  # one compiled _product for every kernel (see ``not_literal``)
    if not _product(inputs, weights, output, no, no, wide):
        return False
    rows, columns = output.shape
    for i in range(rows):
        for j in range(columns):
            output[i, j] += biases[0, j]
    return True


def _dense_backward(inputs, dvalues, dweights, dbiases, wide):  # pragma: no cover - numba
    """The book's ``np.dot(inputs.T, dvalues)`` into ``dweights`` and
    ``np.sum(dvalues, axis=0, keepdims=True)`` into ``dbiases``."""
    if dvalues.shape[1] != dbiases.shape[1] or not _c_ordered(dbiases):
        return False
    if not _product(inputs, dvalues, dweights, _not_literal(True), _not_literal(False), wide):
        return False
    rows, columns = dvalues.shape
    for j in range(columns):
        dbiases[0, j] = dvalues[0, j]
    for i in range(1, rows):
        for j in range(columns):
            dbiases[0, j] += dvalues[i, j]
    for j in range(columns):
        if dbiases[0, j] == 0:
            dbiases[0, j] = abs(dbiases[0, j])  # NumPy starts from 0.0
    return True


def _input_gradient(dvalues, weights, dinputs, wide):  # pragma: no cover - numba
    """The book's ``np.dot(dvalues, weights.T)`` into ``dinputs``."""
    return _product(dvalues, weights, dinputs, _not_literal(False), _not_literal(True), wide)


def _relu(inputs, output):  # pragma: no cover - compiled by numba
    """``np.maximum(0, inputs)``: the input where 0 or above or NaN, else 0.0."""
    rows, columns = inputs.shape
    for i in range(rows):
        for j in range(columns):
            x = inputs[i, j]
            output[i, j] = x if x >= 0 or x != x else 0


def _relu_backward(dvalues, inputs, dinputs):  # pragma: no cover - compiled by numba
    """The book's ``dinputs = dvalues.copy(); dinputs[inputs <= 0] = 0``."""
    rows, columns = dvalues.shape
    for i in range(rows):
        for j in range(columns):
            dinputs[i, j] = 0 if inputs[i, j] <= 0 else dvalues[i, j]


def _shift_rows(inputs, output):  # pragma: no cover - compiled by numba
    """``inputs - np.max(inputs, axis=1, keepdims=True)`` (a NaN is a row's maximum)."""
    rows, columns = inputs.shape
    for i in range(rows):
        top = inputs[i, 0]
        for j in range(1, columns):
            x = inputs[i, j]
            if x > top or x != x:
                top = x
            if top != top:
                break
        for j in range(columns):
            output[i, j] = inputs[i, j] - top


def _normalize_take(values, labels, epsilon, confidences):  # pragma: no cover - numba
    """Each row of ``values`` over its sum (``values / np.sum(values, axis=1,
    keepdims=True)``), in place, and the book's ``np.clip(values, epsilon, 1 - epsilon)``
    at each row's label into ``confidences``. False, writing nothing, for a label outside
    ``[0, classes)``."""
    rows, columns = values.shape
    for i in range(rows):
        if labels[i] < 0 or labels[i] >= columns:
            return False
    bounds = np.empty(2, values.dtype)  # the Python floats rounded to the dtype, as NumPy does
    bounds[0] = epsilon
    bounds[1] = 1.0 - epsilon
    for i in range(rows):
        total = _sum(values[i], 0, columns)
        for j in range(columns):
            values[i, j] = values[i, j] / total
        x = values[i, labels[i]]
        if x < bounds[0]:
            x = bounds[0]
        elif x > bounds[1]:
            x = bounds[1]
        confidences[i] = x
    return True


def _negated_sum(logs):  # pragma: no cover - compiled by numba
    """``np.sum(-logs)`` for the 1-D ``logs``, in their dtype."""
    total = _pairwise(logs, 0, logs.shape[0])
    return abs(total) if total == 0 else -total  # NumPy adds -total to 0.0


def _crossentropy_backward(dvalues, labels, dinputs):  # pragma: no cover - numba
    """The book's ``dinputs = dvalues.copy(); dinputs[range(n), labels] -= 1;
    dinputs = dinputs / n``. False, writing nothing, for a label outside ``[0, classes)``."""
    rows, columns = dvalues.shape
    for i in range(rows):
        if labels[i] < 0 or labels[i] >= columns:
            return False
    scalars = np.empty(2, dvalues.dtype)
    scalars[0] = rows
    scalars[1] = 1
    n, one = scalars[0], scalars[1]
    for i in range(rows):
        for j in range(columns):
            dinputs[i, j] = dvalues[i, j] / n
        dinputs[i, labels[i]] = (dvalues[i, labels[i]] - one) / n
    return True


def _ordered_product(a, b, out, trans_a, trans_b):  # pragma: no cover - compiled by numba
    """``ORDERED``'s product alone (``_lean.wide_mode`` compares it with NumPy's)."""
    _ordered(a, b, out, trans_a, trans_b)


_SOURCES = (numpy_blas.__file__ or "", numba_sums.__file__ or "", _lean.__file__ or "")  # ORDERED

#: The kernels by name, each compiled on first use (``Kernel``); call ``dispatcher()``.
KERNELS = {
    function.__name__.lstrip("_"): Kernel(function, sources=_SOURCES)
    for function in (
        _dense_forward,
        _dense_backward,
        _input_gradient,
        _relu,
        _relu_backward,
        _shift_rows,
        _normalize_take,
        _negated_sum,
        _crossentropy_backward,
        _ordered_product,
    )
}
