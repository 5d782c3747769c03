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

__all__ = ["FLOAT32", "ORDERED", "OWN", "WIDE", "kernels", "products", "wide_mode"]

FLOAT32 = np.dtype("float32")

#: The kernels' ``wide``: products in the arrays' own dtype (NumPy's ``dot``); ``nnfs.init()``'s
#: float64 products through BLAS; the same products summed in order by the kernels.
OWN, WIDE, ORDERED = 0, 1, 2

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


#: The largest product (rows x terms x columns) summed in order by the kernels, where it has
#: few terms or few rows or columns (``ORDERED_NARROW``): the kernels' loops are quicker than
#: a BLAS call on widened copies there (measured), BLAS's blocked routine beyond.
ORDERED_LIMIT = 1 << 16
ORDERED_NARROW = (8, 4)  # at most this many terms, or this many rows or columns

#: How many draws of operands ``_sums_in_order`` compares: one in five missing another order
#: (the worst seen), eight miss it with odds of 3 in a million.
DRAWS = 8

_modes: dict[tuple[int, int, int, bool, bool], int] = {}  # wide_mode's answers, by shape


def wide_mode(wide: bool, m: int, k: int, n: int, trans_a: bool, trans_b: bool) -> int:
    """The kernels' ``wide`` for the product ``op(a) @ op(b)`` of ``m`` rows, ``k`` terms and
    ``n`` columns, ``wide`` being ``products``'s answer: ``OWN`` for NumPy's own ``dot``; for
    ``nnfs.init()``'s, ``ORDERED`` where the product is small and narrow (``ORDERED_LIMIT``)
    and NumPy's BLAS adds its terms in order (asked once per shape, see ``_sums_in_order``),
    else ``WIDE``."""
    if not wide:
        return OWN
    key = (m, k, n, trans_a, trans_b)
    mode = _modes.get(key)
    if mode is None:
        terms, sides = ORDERED_NARROW
        quick = m * k * n <= ORDERED_LIMIT and (k <= terms or min(m, n) <= sides)
        mode = _modes[key] = ORDERED if quick and _sums_in_order(*key) else WIDE
    return mode


def _sums_in_order(m: int, k: int, n: int, trans_a: bool, trans_b: bool) -> bool:
    """True where NumPy's float64 ``dot`` of widened float32 operands of this shape equals,
    bit for bit, the kernels' sum of the same products in order. BLAS's routine depends on
    the shape, never on the values; operands spread over 12 orders of magnitude make another
    order show in the last bits (OpenBLAS's kernels that add a tail of the terms apart showed
    in 16 draws of 20 at worst), and ``DRAWS`` draws must all agree."""
    from ._kernels import KERNELS

    ordered = KERNELS["ordered_product"].dispatcher()
    rng = np.random.default_rng([m, k, n, trans_a, trans_b])  # not the script's generator
    for _ in range(DRAWS):
        a = _spread(rng, (k, m) if trans_a else (m, k))
        b = _spread(rng, (n, k) if trans_b else (k, n))
        wide_a = (a.T if trans_a else a).astype(np.float64)
        wide_b = (b.T if trans_b else b).astype(np.float64)
        expected = _numpy_dot(wide_a, wide_b)
        summed = np.empty((m, n), np.float64)
        ordered(a, b, summed, trans_a, trans_b)
        if summed.tobytes() != expected.tobytes():
            return False
    return True


def _spread(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """float32 numbers of either sign, their magnitudes from 2**-20 to 2**20."""
    scale = np.exp2(rng.integers(-20, 21, shape))
    return (rng.standard_normal(shape) * scale).astype(np.float32)
