"""Where the book's objects take their compiled passes (``_kernels``), and whose products.

On the numpy backend with numba, each book method's common case (NumPy arrays of the
object's float dtype, 2-D, laid out as the book's own are) runs one compiled pass instead
of the general path's layers; anything else takes the general path, which gives the same
numbers. This module says whether a backend has the passes and what ``np.dot`` a script
runs under, so the products match the book's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backends import Backend

__all__ = ["FLOAT32", "kernels", "products"]

FLOAT32 = np.dtype("float32")

try:  # NumPy's own dot, whatever a script has put in np.dot since
    from numpy._core.multiarray import dot as _numpy_dot
except ImportError:  # pragma: no cover - NumPy's layout changed
    _numpy_dot = None

_ready: bool | None = None  # NumPy's BLAS callable from compiled code, once known
_last_dot: list[Any] = [None, None]  # np.dot as last seen, and what it computes


def kernels(backend: Backend) -> dict[str, Any] | None:
    """The compiled passes by name (numba's dispatchers), for an object computing on
    ``backend``; None where it is not the numpy backend with numba, or NumPy's BLAS cannot be
    called from compiled code."""
    global _ready
    if not backend.on_host or backend.fast_path != "numba":
        return None
    if _ready is None:
        from ..backends import numpy_blas

        _ready = numpy_blas.load() is None
    if not _ready:
        return None
    from ._kernels import KERNELS

    return {name: kernel.dispatcher() for name, kernel in KERNELS.items()}


def _nnfs_dot(dot: Any) -> bool:
    """True for ``nnfs.init()``'s ``np.dot`` (its operands in float64, the product rounded to
    float32) around NumPy's own, once or more."""
    for _ in range(8):
        if getattr(dot, "__module__", None) != "nnfs.core":
            return False
        if getattr(dot, "__qualname__", None) != "init.<locals>.dot":
            return False
        cells = getattr(dot, "__closure__", None) or ()
        if len(cells) != 1:
            return False
        dot = cells[0].cell_contents
        if dot is _numpy_dot:
            return True
    return False


def products(exact: bool, dtype: np.dtype) -> bool | None:
    """The kernels' ``wide`` for a layer of ``dtype``: False for products in the arrays' own
    dtype (NumPy's ``dot``, or xpnn's own where ``exact`` is off), True for ``nnfs.init()``'s
    float64 products of float32 arrays; None where ``np.dot`` is something else, or nnfs's
    meets float64 arrays (the general path calls it then)."""
    if not exact:
        return False
    dot = np.dot
    if dot is not _last_dot[0]:
        kind = False if dot is _numpy_dot else (True if _nnfs_dot(dot) else None)
        _last_dot[:] = [dot, kind]
    kind = _last_dot[1]
    if kind and dtype is not FLOAT32:
        return None
    return kind
