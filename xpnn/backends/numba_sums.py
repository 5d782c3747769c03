"""NumPy's pairwise summation, compiled: the order in which ``np.sum`` (``np.add.reduce``)
adds a contiguous 1-D array, so that a compiled pass's sums are NumPy's bit for bit. Used by
the compiled epoch's losses (``training.compiled_chain``) and the book's kernels
(``book._kernels``); a kernel that calls these lists this file among its cache's sources.
Only imported where numba is.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["numpy_sum", "pairwise"]


@numba.njit(error_model="numpy", nogil=True)
def _block(a, start, n):  # pragma: no cover - compiled by numba
    """NumPy's pairwise sum of ``a[start:start + n]`` for 1 <= n <= 128: in order below 8
    values, else 8 running sums, added pairwise, then the rest in order."""
    if n < 8:
        total = a[start]
        for i in range(1, n):
            total += a[start + i]
        return total
    r0, r1, r2, r3 = a[start], a[start + 1], a[start + 2], a[start + 3]
    r4, r5, r6, r7 = a[start + 4], a[start + 5], a[start + 6], a[start + 7]
    i = 8
    while i < n - n % 8:
        r0 += a[start + i]
        r1 += a[start + i + 1]
        r2 += a[start + i + 2]
        r3 += a[start + i + 3]
        r4 += a[start + i + 4]
        r5 += a[start + i + 5]
        r6 += a[start + i + 6]
        r7 += a[start + i + 7]
        i += 8
    total = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        total += a[start + i]
        i += 1
    return total


@numba.njit(error_model="numpy", nogil=True)
def _half(n):  # pragma: no cover - compiled by numba
    """Where NumPy's pairwise sum splits ``n`` values: half, down to a multiple of 8."""
    half = n // 2
    return half - half % 8


@numba.njit(error_model="numpy", nogil=True)
def pairwise(a, start, n):  # pragma: no cover - compiled by numba
    """NumPy's pairwise sum of ``a[start:start + n]`` (n >= 1) in ``a``'s dtype: blocks of
    up to 128 values (``_block``), beyond that the sum of both halves' sums. A zero sum may
    be -0.0 here, where NumPy's is 0.0 (``numpy_sum``).

    The halving runs on a stack of its own rather than by recursion: numba's disk cache
    cannot load a compiled caller of a recursive function. Per level: (start, count, the
    left half's sum, whether it is done).
    """
    if n <= 128:  # start as a plain integer: one compiled _block for a constant start too
        return _block(a, np.int64(start), n)
    starts = np.empty(64, np.int64)
    counts = np.empty(64, np.int64)
    lefts = np.empty(64, a.dtype)
    left_done = np.zeros(64, np.bool_)
    top = 0
    starts[0], counts[0] = start, n
    total = a[start]
    while True:
        if counts[top] > 128:  # split: the left half first
            starts[top + 1], counts[top + 1] = starts[top], _half(counts[top])
            left_done[top + 1] = False
            top += 1
            continue
        total = _block(a, starts[top], counts[top])
        top -= 1
        while top >= 0 and left_done[top]:  # a right half done: its parent is done too
            total = lefts[top] + total
            top -= 1
        if top < 0:
            return total
        lefts[top], left_done[top] = total, True  # a left half done: now the right one
        half = _half(counts[top])
        starts[top + 1], counts[top + 1] = starts[top] + half, counts[top] - half
        left_done[top + 1] = False
        top += 1


@numba.njit(error_model="numpy", nogil=True)
def numpy_sum(a, start, n):  # pragma: no cover - compiled by numba
    """``np.add.reduce(a[start:start + n])`` (n >= 1): NumPy adds the pairwise sum to 0.0,
    which turns a sum of -0.0 into 0.0."""
    total = pairwise(a, start, n)
    return abs(total) if total == 0 else total
