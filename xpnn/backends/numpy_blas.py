"""NumPy's own BLAS routines, called from numba-compiled code (the compiled epoch's products).

numba's ``np.dot`` calls SciPy's BLAS, another build with its own thread settings; these call
the OpenBLAS that NumPy's wheels ship, with the arguments ``numpy.dot`` gives it for 2-D
operands of 2 rows and 2 columns or more, so a product is NumPy's bit for bit, under the
thread limits set for NumPy (``xpnn.blas_threads``). :func:`load` makes the routines known to
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

__all__ = ["column_sums", "load", "product"]

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
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
    }.items()
}  # fmt: skip
_sgemm, _dgemm = _SYMBOLS["sgemm"], _SYMBOLS["dgemm"]
_sgemv, _dgemv = _SYMBOLS["sgemv"], _SYMBOLS["dgemv"]
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
    """``out = op(a) @ op(b)`` as NumPy's ``dot`` calls BLAS for 2-D operands of 2 rows and 2
    columns or more; ``op`` transposes a C-ordered array where ``trans_`` says so."""
    m = a.shape[1] if trans_a else a.shape[0]
    k = a.shape[0] if trans_a else a.shape[1]
    n = b.shape[0] if trans_b else b.shape[1]
    ta, tb = (_TRANS if trans_a else _NO_TRANS), (_TRANS if trans_b else _NO_TRANS)
    lda, ldb, ldc = a.shape[1], b.shape[1], out.shape[1]
    if a.itemsize == 4:
        _sgemm(_ROW_MAJOR, ta, tb, m, n, k, 1.0, a.ctypes.data, lda, b.ctypes.data, ldb, 0.0,
               out.ctypes.data, ldc)  # fmt: skip
    else:
        _dgemm(_ROW_MAJOR, ta, tb, m, n, k, 1.0, a.ctypes.data, lda, b.ctypes.data, ldb, 0.0,
               out.ctypes.data, ldc)  # fmt: skip


def _column_sums(ones, a, out):  # pragma: no cover - compiled by numba
    """``out = ones @ a`` (a row of ones times ``a``) as NumPy's ``dot`` calls BLAS for it:
    the bias gradient of ``Backend.sum_rows``."""
    rows, columns = a.shape
    if a.itemsize == 4:
        _sgemv(_ROW_MAJOR, _TRANS, rows, columns, 1.0, a.ctypes.data, columns, ones.ctypes.data,
               1, 0.0, out.ctypes.data, 1)  # fmt: skip
    else:
        _dgemv(_ROW_MAJOR, _TRANS, rows, columns, 1.0, a.ctypes.data, columns, ones.ctypes.data,
               1, 0.0, out.ctypes.data, 1)  # fmt: skip


product = numba.njit(_product, error_model="numpy", nogil=True)
column_sums = numba.njit(_column_sums, error_model="numpy", nogil=True)
