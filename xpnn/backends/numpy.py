"""NumPy on the CPU: in-place (``out=``) versions of the hot operations.

``import numpy`` in this module is the library, not the module itself: imports are absolute.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Backend

__all__ = ["NumpyBackend"]

#: Rows at most this wide are reduced column by column (see ``_NumpyNamespace``).
NARROW_ROWS = 32


class _NumpyNamespace:
    """NumPy's namespace with a few functions called straight at what they wrap.

    ``np.sum(a, axis=1)`` runs ``np.add.reduce(a, axis=1)``, and ``np.take`` the array's own
    ``take``, behind a Python layer that costs more than the work itself on the small arrays of
    a training step. A reduction along short rows (a batch of class scores) is several times
    faster as one operation per column than as NumPy's reduce; the results are the same (a sum
    only below 8 columns, where NumPy adds in the same order).
    """

    def __init__(self) -> None:
        own = vars(type(self))  # the functions below, which NumPy's must not shadow
        self.__dict__.update({name: getattr(np, name) for name in np.__all__ if name not in own})

    @staticmethod
    def sum(x: np.ndarray, /, *, axis: Any = None, keepdims: bool = False) -> Any:
        if x.ndim == 2 and axis in (1, -1) and 1 < x.shape[1] < 8:
            return _by_columns(np.add, x, keepdims)
        return np.add.reduce(x, axis=axis, keepdims=keepdims)

    @staticmethod
    def max(x: np.ndarray, /, *, axis: Any = None, keepdims: bool = False) -> Any:
        if x.ndim == 2 and axis in (1, -1) and 1 < x.shape[1] <= NARROW_ROWS:
            return _by_columns(np.maximum, x, keepdims)
        return np.maximum.reduce(x, axis=axis, keepdims=keepdims)

    @staticmethod
    def clip(x: np.ndarray, /, min: Any = None, max: Any = None) -> Any:
        if min is None or max is None:
            return np.clip(x, min, max)
        return np.minimum(np.maximum(x, min), max)

    @staticmethod
    def astype(x: np.ndarray, dtype: Any, /, *, copy: bool = True) -> Any:
        return x.astype(dtype, copy=copy)

    @staticmethod
    def take(x: np.ndarray, indices: np.ndarray, /, *, axis: int | None = None) -> Any:
        return x.take(indices, axis=axis)

    @staticmethod
    def argmax(x: np.ndarray, /, *, axis: int | None = None, keepdims: bool = False) -> Any:
        return x.argmax(axis=axis, keepdims=keepdims)


def _by_columns(ufunc: np.ufunc, x: np.ndarray, keepdims: bool) -> np.ndarray:
    """``ufunc.reduce(x, axis=1)``, one column at a time from the left."""
    out = ufunc(x[:, 0], x[:, 1])
    for column in range(2, x.shape[1]):
        ufunc(out, x[:, column], out=out)
    return out[:, None] if keepdims else out


#: NumPy's own ``dot`` (the array method runs the same routine): the book's ``nnfs.init()``
#: replaces ``np.dot`` with a wrapper that refuses ``out=`` and multiplies in float64, but
#: leaves the method alone, so xpnn's products are the same before or after it, on the step
#: path and in the compiled epoch alike.
_dot = np.ndarray.dot


class NumpyBackend(Backend):
    """NumPy on the CPU, with in-place (``out=``) versions of the hot operations.

    Optimizers run their in-place NumPy versions here (``fast_path``); their scratch arrays
    belong to the optimizer: the backend is shared by every model, so it keeps nothing that
    belongs to one computation.
    """

    name = "numpy"
    fast_path = "numpy"
    on_host = True

    def __init__(self, dtype: str = "float32") -> None:
        Backend.__init__(self, _NumpyNamespace(), "cpu", dtype, pass_device=False)
        self._constants: dict[tuple[str, int], np.ndarray] = {}

    def is_own(self, a: Any) -> bool:
        """``Backend.is_own`` for this library."""
        return type(a) is np.ndarray

    def ensure(self, a: Any, argument: str = "inputs") -> Any:
        """``Backend.ensure`` for this library."""
        if type(a) is np.ndarray and a.dtype == self.dtype:
            return a  # the hot loop's case, checked first
        return Backend.ensure(self, a, argument)

    def matmul(self, a: Any, b: Any, *, out: Any = None) -> Any:
        """``Backend.matmul`` for this library."""
        if a.ndim == b.ndim == 2 and (out is None or out.flags.c_contiguous):
            return _dot(a, b, out=out)  # less machinery than np.matmul
        return np.matmul(a, b, out=out)

    def take_labels(self, a: Any, labels: Any) -> Any:
        """``Backend.take_labels`` for this library."""
        return a[self._arange(a.shape[0]), labels]

    def one_hot(self, labels: Any, classes: int) -> Any:
        """``Backend.one_hot`` for this library."""
        return self._constant("eye", classes).take(labels, axis=0)  # rows of the identity

    def sum_rows(self, a: Any, *, out: Any) -> Any:
        """``Backend.sum_rows`` for this library."""
        if a.ndim == 2 and a.dtype == out.dtype and out.flags.c_contiguous:
            # A row of ones times ``a`` through BLAS: several times faster than add.reduce on
            # a batch of gradients (the sum's rounding order differs, as it does on a GPU).
            return _dot(self._constant("ones", a.shape[0]), a, out=out)
        return np.add.reduce(a, axis=0, keepdims=True, out=out)

    def _constant(self, kind: str, n: int) -> np.ndarray:
        """The ``n`` x ``n`` identity ("eye") or a 1 x ``n`` row of ones, kept for reuse.

        Constants, never written: every model may share them.
        """
        key = (kind, n)
        if key not in self._constants:
            make = np.eye if kind == "eye" else lambda n, dtype: np.ones((1, n), dtype)
            self._constants[key] = make(n, dtype=self.dtype)
        return self._constants[key]

    def random(self, generator: Any, shape: tuple[int, ...]) -> Any:
        """``Backend.random`` for this library."""
        return generator.random(shape, dtype=self.dtype_name)
