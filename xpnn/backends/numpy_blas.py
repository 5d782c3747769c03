"""NumPy's own BLAS routines, called from numba-compiled code (the compiled epoch's products).

numba's ``np.dot`` calls SciPy's BLAS, another build with its own thread settings; these call
the OpenBLAS that NumPy's wheels ship, with the routine and arguments ``numpy.dot`` chooses
for 2-D operands of every shape (``gemm``, ``gemv``, ``dot``, ``axpy`` or one multiply: see
``product``), so a product is NumPy's bit for bit, under the thread limits set for NumPy
(``xpnn.blas_threads``). :func:`load` makes the routines known to
numba's linker; where NumPy has another BLAS, it says so and nothing here can run.
Only imported where numba is.
"""

from __future__ import annotations

import glob
import os

import llvmlite.binding
import numba
import numpy as np
from numba import types

__all__ = ["column_sums", "load", "not_literal", "product"]

_ROW_MAJOR, _COLUMN_MAJOR, _NO_TRANS, _TRANS = 101, 102, 111, 112
_i32, _i64, _ptr = types.int32, types.int64, types.voidptr
#: The CBLAS routines of NumPy wheels' OpenBLAS (64-bit integers), by the name they export.
_SYMBOLS = {
    name: types.ExternalFunction(f"scipy_cblas_{name}64_", signature)
    for name, signature in {
        "sgemm": types.void(_i32, _i32, _i32, _i64, _i64, _i64, types.float32, _ptr, _i64, _ptr,
                            _i64, types.float32, _ptr, _i64),
        "dgemm": types.void(_i32, _i32, _i32, _i64, _i64, _i64, types.float64, _ptr, _i64, _ptr,
                            _i64, types.float64, _ptr, _i64),
        "sgemv": types.void(_i32, _i32, _i64, _i64, types.float32, _ptr, _i64, _ptr, _i64,
                            types.float32, _ptr, _i64),
        "dgemv": types.void(_i32, _i32, _i64, _i64, types.float64, _ptr, _i64, _ptr, _i64,
                            types.float64, _ptr, _i64),
        "saxpy": types.void(_i64, types.float32, _ptr, _i64, _ptr, _i64),
        "daxpy": types.void(_i64, types.float64, _ptr, _i64, _ptr, _i64),
        "sdot": types.float32(_i64, _ptr, _i64, _ptr, _i64),
        "ddot": types.float64(_i64, _ptr, _i64, _ptr, _i64),
    }.items()
}  # fmt: skip
_sgemm, _dgemm = _SYMBOLS["sgemm"], _SYMBOLS["dgemm"]
_sgemv, _dgemv = _SYMBOLS["sgemv"], _SYMBOLS["dgemv"]
_saxpy, _daxpy = _SYMBOLS["saxpy"], _SYMBOLS["daxpy"]
_sdot, _ddot = _SYMBOLS["sdot"], _SYMBOLS["ddot"]
_blas_problem: str | None = None  # why NumPy's BLAS cannot be called, once known
_blas_loaded = False


def load() -> str | None:
    """Make NumPy's OpenBLAS routines callable from compiled code; None, or why they cannot."""
    global _blas_loaded, _blas_problem
    if not _blas_loaded and _blas_problem is None:
        import ctypes

        folder = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
        libraries = glob.glob(os.path.join(glob.escape(folder), "libscipy_openblas64_*"))
        names = [symbol.symbol for symbol in _SYMBOLS.values()]
        found = []
        for path in libraries:
            try:
                library = ctypes.CDLL(path)
            except OSError:
                continue
            if all(hasattr(library, name) for name in names):
                found.append(path)
        if not found:
            _blas_problem = "NumPy's BLAS is not the OpenBLAS that NumPy's wheels ship"
        else:
            llvmlite.binding.load_library_permanently(found[0])
            _blas_loaded = True
    return _blas_problem


def _product(a, b, out, trans_a, trans_b):  # pragma: no cover - compiled by numba
    """``out = op(a) @ op(b)`` as NumPy's ``dot`` computes it for 2-D operands of any shape
    (``cblas_matrixproduct`` in NumPy's ``cblasfuncs.c``); ``op`` transposes ``a`` or ``b``
    (C-ordered) where ``trans_`` says so, as ``a.T`` would. With ``op(a)`` of p x q, ``op(b)``
    of q x r: a 1 x 1 operand is a scalar (one multiply for 1 x 1 times 1 x 1, else ``axpy``
    into zeros); a row times a column is NumPy's ``dot`` of two vectors (``?dot``, added to
    0.0 in float64); a matrix times a column, or a row times a matrix, is ``gemv``; the rest
    (an outer product, k = 1, included) is ``gemm``, with the transposes and leading
    dimensions NumPy derives from each operand's strides. NumPy takes ``syrk`` for an array
    times its own transpose (one buffer): not reproduced; the compiled epoch never multiplies
    an array by itself, and the book's kernels check for it."""
    p = a.shape[1] if trans_a else a.shape[0]
    q = a.shape[0] if trans_a else a.shape[1]
    r = b.shape[0] if trans_b else b.shape[1]
    # each operand's strides as NumPy sees ``op(x)``, in items
    sa0, sa1 = a.strides[0] // a.itemsize, a.strides[1] // a.itemsize
    sb0, sb1 = b.strides[0] // b.itemsize, b.strides[1] // b.itemsize
    if trans_a:
        sa0, sa1 = sa1, sa0
    if trans_b:
        sb0, sb1 = sb1, sb0
    single = a.itemsize == 4
    if q > 1 and p > 1 and r > 1:  # matrix times matrix: gemm
        ta, tb = (_TRANS if trans_a else _NO_TRANS), (_TRANS if trans_b else _NO_TRANS)
        lda, ldb, ldc = a.shape[1], b.shape[1], out.shape[1]
        if single:
            _sgemm(_ROW_MAJOR, ta, tb, p, r, q, 1.0, a.ctypes.data, lda, b.ctypes.data, ldb,
                   0.0, out.ctypes.data, ldc)  # fmt: skip
        else:
            _dgemm(_ROW_MAJOR, ta, tb, p, r, q, 1.0, a.ctypes.data, lda, b.ctypes.data, ldb,
                   0.0, out.ctypes.data, ldc)  # fmt: skip
        return
    out[:] = 0  # NumPy's memset before the BLAS call (``axpy`` adds to it)
    if q == 1 and p == 1 and r == 1:  # scalar times scalar: one multiply
        out[0, 0] = a[0, 0] * b[0, 0]
    elif q == 1 and p == 1:  # scalar times a row: axpy of the row
        _axpy(single, r, a[0, 0], b, sb1, out)
    elif q == 1 and r == 1:  # a column times a scalar: axpy of the column
        _axpy(single, p, b[0, 0], a, sa0, out)
    elif q == 1:  # a column times a row (an outer product): gemm with k = 1, both as Fortran
        if single:
            _sgemm(_ROW_MAJOR, _TRANS, _TRANS, p, r, 1, 1.0, a.ctypes.data, p, b.ctypes.data, 1,
                   0.0, out.ctypes.data, r)  # fmt: skip
        else:
            _dgemm(_ROW_MAJOR, _TRANS, _TRANS, p, r, 1, 1.0, a.ctypes.data, p, b.ctypes.data, 1,
                   0.0, out.ctypes.data, r)  # fmt: skip
    elif p == 1 and r == 1:  # a row times a column: NumPy's dot of two vectors
        if single:
            total = 0.0 + np.float64(_sdot(q, a.ctypes.data, sa1, b.ctypes.data, sb0))
        else:
            total = 0.0 + _ddot(q, a.ctypes.data, sa1, b.ctypes.data, sb0)
        out[0, 0] = total
    else:  # a matrix times a column (gemv), or a row times a matrix (gemv of it transposed)
        column = r == 1  # one call for both: one compiled ``_gemv`` (see ``not_literal``)
        matrix, transposed = (a, trans_a) if column else (b, trans_b)
        m, n, x, incx = (p, q, b, sb0) if column else (q, r, a, sa1)
        _gemv(single, _NO_TRANS if column else _TRANS, matrix, transposed, m, n, x, incx, out)


@numba.njit(error_model="numpy", nogil=True)
def _axpy(single, n, alpha, x, incx, out):  # pragma: no cover - compiled by numba
    """``out += alpha * x`` over ``n`` values of ``x`` ``incx`` apart (BLAS ``axpy``)."""
    if single:
        _saxpy(n, alpha, x.ctypes.data, incx, out.ctypes.data, 1)
    else:
        _daxpy(n, alpha, x.ctypes.data, incx, out.ctypes.data, 1)


@numba.njit(error_model="numpy", nogil=True)
def _gemv(single, trans, matrix, transposed, m, n, x, incx, out):  # pragma: no cover
    """``out = op(matrix) @ x`` (BLAS ``gemv``) for ``matrix`` of m x n as NumPy sees it: row
    major where it is C-ordered, column major where it is ``transposed`` (a C array's ``.T``)."""
    order, lda = (_COLUMN_MAJOR, m) if transposed else (_ROW_MAJOR, n)
    if single:
        _sgemv(order, trans, m, n, 1.0, matrix.ctypes.data, lda, x.ctypes.data, incx, 0.0,
               out.ctypes.data, 1)  # fmt: skip
    else:
        _dgemv(order, trans, m, n, 1.0, matrix.ctypes.data, lda, x.ctypes.data, incx, 0.0,
               out.ctypes.data, 1)  # fmt: skip


def _column_sums(ones, a, out):  # pragma: no cover - compiled by numba
    """``out = ones @ a`` (a row of ones times ``a``, 2 rows and 2 columns or more) as NumPy's
    ``dot`` calls BLAS for it: the bias gradient of ``Backend.sum_rows`` (``product`` takes
    any shape)."""
    rows, columns = a.shape
    if a.itemsize == 4:
        _sgemv(_ROW_MAJOR, _TRANS, rows, columns, 1.0, a.ctypes.data, columns, ones.ctypes.data,
               1, 0.0, out.ctypes.data, 1)  # fmt: skip
    else:
        _dgemv(_ROW_MAJOR, _TRANS, rows, columns, 1.0, a.ctypes.data, columns, ones.ctypes.data,
               1, 0.0, out.ctypes.data, 1)  # fmt: skip


@numba.njit(error_model="numpy", nogil=True)
def not_literal(flag):  # pragma: no cover - compiled by numba
    """``flag`` as a plain boolean, for ``product``'s transposes: numba compiles a function
    once per combination of constant (literal) arguments, and each copy of ``product``, with
    the BLAS calls it holds, adds about a second to a cold compile."""
    return np.bool_(flag)


product = numba.njit(_product, error_model="numpy", nogil=True)
column_sums = numba.njit(_column_sums, error_model="numpy", nogil=True)
