"""The compiled fast path of the NumPy backend: numba kernels, used where numba is installed.

numba is optional (``pip install "xpnn[jit]"``); without it, or with ``XPNN_JIT=0`` in the
environment, the NumPy backend runs its plain NumPy operations. With it, ``get_backend("numpy")``
returns a :class:`JitBackend`: the same NumPy arrays and results, with the hottest steps of
training each done in one compiled pass instead of several NumPy calls.

Every kernel is compiled on its first call (numba's ``njit``) and cached on disk where numba
places its cache (beside the source in ``__pycache__``, or, where that folder cannot be written,
in the user's cache folder; ``NUMBA_CACHE_DIR`` chooses another), through ``jit_cache``, which
refuses a folder others can write and drops a damaged entry. None asks for ``fastmath``, so
each operation rounds as IEEE arithmetic says and no multiply-add is contracted: the optimizer
updates, the bias add, ReLU and every gradient give the reference's numbers bit for bit
(tested). Two sums run in another order than NumPy's: the loss of a batch (added in float64)
and softmax's row sums on rows of 8 classes or more; those agree with the reference to
rounding.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import logging
import os
import threading
import types
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from .._checks import shown
from .numpy import NumpyBackend

__all__ = [
    "COMPILING",
    "EPOCH_SWITCH",
    "PARALLEL_FROM",
    "JitBackend",
    "Kernel",
    "announcing_compiles",
    "compiling",
    "enabled",
    "epochs_compiled",
    "flat",
    "numpy_backend",
    "scalars",
    "switch",
    "threads",
]

log = logging.getLogger("xpnn")

#: Buffers with at least this many values may be updated by several threads (see
#: ``JitBackend.elementwise`` and :func:`threads`); on smaller ones handing work to a thread costs
#: more than it saves.
PARALLEL_FROM = 1 << 16

_numba: Any = None  # the module, once imported
_problem: str | None = None  # why numba cannot be used, once known


#: The spellings a yes/no environment variable may take (any case, spaces around ignored).
SWITCH_VALUES = {
    **dict.fromkeys(("1", "true", "yes", "on"), True),
    **dict.fromkeys(("0", "false", "no", "off"), False),
}


#: The environment variable that turns the compiled epoch (``xpnn.training.compiled``) off.
EPOCH_SWITCH = "XPNN_JIT_EPOCH"


def switch(name: str, default: bool, on: str = "compiled path", off: str = "plain NumPy") -> bool:
    """The yes/no environment variable ``name``: ``default`` where it is unset or blank, and a
    ValueError naming it, the accepted spellings and what they choose (``on``, ``off``) where
    it is none of them."""
    value = os.environ.get(name, "")
    if not value.strip():
        return default
    try:
        return SWITCH_VALUES[value.strip().lower()]
    except KeyError:
        raise ValueError(
            f"{name} must be one of 1, true, yes, on ({on}) or 0, false, no, off ({off}), in "
            f"any case; got {shown(value)}"
        ) from None


def epochs_compiled() -> bool:
    """``XPNN_JIT_EPOCH`` (see :func:`switch`): whether a model the compiled epoch expresses
    trains through it (the default), or step by step."""
    return switch(EPOCH_SWITCH, True, "compiled epochs", "one step at a time")


def enabled() -> bool:
    """True where the NumPy backend runs compiled: numba imports and ``XPNN_JIT`` does not turn
    it off (see :func:`switch`; an unknown value is refused).

    Importing numba takes 0.1 to 0.3 s, so it happens once, at the first NumPy backend.
    """
    if not switch("XPNN_JIT", True):
        return False
    return _import_numba() is not None


def _import_numba() -> Any:
    """The numba module, or None where it cannot be imported (the reason is logged once if it
    is installed but broken, e.g. built for another NumPy)."""
    global _numba, _problem
    if _numba is None and _problem is None:
        try:
            import numba
        except ImportError as error:
            _problem = f"{type(error).__name__}: {error}"
            if "No module named 'numba'" not in str(error):
                log.warning("numba cannot be imported, xpnn runs plain NumPy: %s", _problem)
        else:
            _numba = numba
    return _numba


def numpy_backend(dtype: str = "float32") -> NumpyBackend:
    """The NumPy backend for ``dtype``: compiled (:class:`JitBackend`) where :func:`enabled`."""
    return JitBackend(dtype) if enabled() else NumpyBackend(dtype)


#: What to call as a kernel starts compiling (its disk cache holding none for its arguments):
#: set by ``announcing_compiles`` for the calling thread alone.
_announce: contextvars.ContextVar[Callable[[], None] | None] = contextvars.ContextVar(
    "xpnn_announce_compiles", default=None
)


@contextlib.contextmanager
def announcing_compiles(callback: Callable[[], None]) -> Iterator[None]:
    """Call ``callback`` each time a kernel starts compiling in this block (this thread's
    calls alone): a training run says so, since a first run waits seconds for numba."""
    token = _announce.set(callback)
    try:
        yield
    finally:
        _announce.reset(token)


#: Logged once per process where a kernel compiles outside ``announcing_compiles`` (a
#: hand-written loop, the book's scripts): no progress shows it, and the wait is seconds.
COMPILING = (
    "xpnn: numba is compiling xpnn's kernels for these arrays (once: its cache keeps them for "
    "later runs)"
)
_compile_logged = False
_compile_logged_lock = threading.Lock()


def compiling() -> None:
    """A kernel starts compiling (``jit_cache`` calls this): tell ``announcing_compiles``, or
    else, the first time in this process, log ``COMPILING`` (logger ``xpnn``, at WARNING, so
    Python's default handler prints it on stderr where logging is not set up)."""
    global _compile_logged
    callback = _announce.get()
    if callback is not None:
        callback()
        return
    with _compile_logged_lock:
        first, _compile_logged = not _compile_logged, True
    if first:
        log.warning(COMPILING)


class Kernel:
    """A Python function compiled by numba on its first call and kept: compiled code, shared
    by every computation, holding no state of one. It releases the GIL while it runs.

    ``sources`` are the files of other modules whose compiled functions it calls: its disk
    cache is stale when any of them changes, as when its own file does.
    """

    def __init__(self, function: Callable[..., Any], *, sources: tuple[str, ...] = ()) -> None:
        self.function, self.sources = function, sources
        self._compiled: Any = None

    def _compile(self) -> Any:
        if _import_numba() is None:
            raise RuntimeError(f"the compiled path needs numba (the jit extra): {_problem}")
        # NumPy's arithmetic (division by zero gives infinity, not an exception): the check
        # for zero that Python's rules would put in every division also keeps the loops from
        # being vectorised.
        options = {"error_model": "numpy", "nogil": True}
        # numba's disk cache is named after the function and records no options, so a copy
        # whose name carries them is compiled.
        source = self.function
        suffix = "_" + "_".join(f"{k}_{v}" for k, v in options.items())
        function = types.FunctionType(
            source.__code__,
            source.__globals__,
            source.__name__ + suffix,
            source.__defaults__,
            source.__closure__,
        )
        function.__qualname__ = source.__qualname__ + suffix
        function.__module__ = source.__module__
        compiled = _numba.njit(function, **options)
        from . import jit_cache  # imports numba's caching: only once numba is known to import

        try:
            # numba's own disk cache (``cache=True``), but checked before it is read.
            compiled._cache = jit_cache.CheckedCache(compiled.py_func, self.sources)
        except RuntimeError as error:  # no folder to cache in can be written: compile each run
            log.info("numba cannot cache %s (%s): it compiles in every process", source, error)
        self._compiled = compiled
        return compiled

    def dispatcher(self) -> Any:
        """The compiled function itself (numba's dispatcher, which compiles for each new kind
        of argument on its first call): a hot loop calls it without this object's frame."""
        compiled = self._compiled
        return self._compile() if compiled is None else compiled

    def __call__(self, *args: Any) -> Any:
        """Run the compiled function (compiling it the first time)."""
        compiled = self._compiled
        return (self._compile() if compiled is None else compiled)(*args)


#: Threads that run parts of large element-wise kernels, made at first use; they wait on a
#: queue (no spinning, so BLAS keeps its cores between steps).
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_pool_pid = 0
_pool_lock = threading.Lock()


def threads() -> int:
    """How many threads an element-wise kernel uses on a large buffer: ``XPNN_JIT_THREADS``,
    1 by default; a ValueError naming it where it is not a positive integer.

    A :class:`JitBackend` reads it once, when it is made, so a bad value is refused before any
    model on it changes, whatever the model's size.

    Inside a training step more threads were slower: measured on W2's Adam (670k values, 2
    cores), 0.79 ms on two threads against 0.48 ms on one, because BLAS's threads still hold
    the other cores right after the matrix products (alone, two threads took 0.41 ms and one
    0.71 ms).
    """
    configured = os.environ.get("XPNN_JIT_THREADS", "").strip()
    if not configured:
        return 1
    if not configured.isdecimal() or int(configured) < 1:
        raise ValueError(f"XPNN_JIT_THREADS must be a positive integer; got {shown(configured)}")
    return int(configured)


def _in_parts(kernel: Kernel, arrays: tuple[np.ndarray, ...], s: np.ndarray, parts: int) -> None:
    """``kernel(*arrays, s)`` in ``parts`` parts, the first on this thread, the others on the
    shared pool's."""
    global _pool, _pool_size, _pool_pid
    with _pool_lock:
        # A forked child has the pool object but not its threads: it makes its own.
        if _pool is None or _pool_size < parts - 1 or _pool_pid != os.getpid():
            _pool, _pool_size = ThreadPoolExecutor(parts - 1, "xpnn-jit"), parts - 1
            _pool_pid = os.getpid()
        pool = _pool
    size = arrays[0].size
    bounds = [size * k // parts for k in range(parts + 1)]
    pieces = [tuple(a[lo:hi] for a in arrays) for lo, hi in itertools.pairwise(bounds)]
    others = [pool.submit(kernel, *piece, s) for piece in pieces[1:]]
    kernel(*pieces[0], s)
    for other in others:
        other.result()


def scalars(dtype: Any, *values: float) -> np.ndarray:
    """``values`` in an array of ``dtype``, for a kernel to read.

    NumPy rounds a Python float to the array's type before it computes with it (NEP 50), and a
    kernel must take the same rounded numbers; one small array is also quicker to make and to
    pass to a compiled function than a NumPy scalar per value.
    """
    return np.array(values, dtype=dtype)


def flat(*arrays: np.ndarray) -> tuple[np.ndarray, ...] | None:
    """One-dimensional views of same-shaped arrays that lie in memory alike (all C- or all
    Fortran-ordered), so element ``i`` of each view is the same element of every array; None
    where they do not."""
    if all(a.ndim == 1 and a.flags.c_contiguous for a in arrays):
        return arrays  # a model's flat buffers: the common case, checked first
    if all(a.flags.c_contiguous for a in arrays):
        return tuple(a.reshape(-1) for a in arrays)
    if all(a.flags.f_contiguous for a in arrays):
        return tuple(a.T.reshape(-1) for a in arrays)
    return None


# -- the fused kernels of a training step ----------------------------------------------------


def _add_row(output, row):  # pragma: no cover - compiled by numba
    """``output += row`` for every row of ``output``."""
    rows, columns = output.shape
    for i in range(rows):
        for j in range(columns):
            output[i, j] += row[0, j]


def _relu(inputs, s, output):  # pragma: no cover - compiled by numba
    """``max(inputs, 0)`` as NumPy's maximum gives it: the input where it is above 0 or NaN,
    else 0 (so -0.0 becomes 0.0)."""
    zero = s[0]
    rows, columns = inputs.shape
    for i in range(rows):
        for j in range(columns):
            x = inputs[i, j]
            output[i, j] = x if x > zero or x != x else zero


def _shift_rows(inputs, output):  # pragma: no cover - compiled by numba
    """Each row of ``inputs`` less its maximum, into ``output``."""
    rows, columns = inputs.shape
    for i in range(rows):
        top = inputs[i, 0]
        for j in range(1, columns):
            top = max(top, inputs[i, j])
        for j in range(columns):
            output[i, j] = inputs[i, j] - top


def _normalize_rows(values, s):  # pragma: no cover - compiled by numba
    """Each row of ``values`` over its sum, in place; the sum runs left to right, as NumPy sums
    a narrow row (``s[0]`` is zero in the arrays' dtype)."""
    rows, columns = values.shape
    for i in range(rows):
        total = s[0]
        for j in range(columns):
            total += values[i, j]
        for j in range(columns):
            values[i, j] = values[i, j] / total


def _crossentropy_labels(probs, labels, s, dinputs, gradient):  # pragma: no cover
    """Softmax outputs against class indices: the summed clipped cross-entropy, the right
    predictions (the first maximum, as argmax takes it), and ``(probs - one_hot) / n`` into
    ``dinputs``. ``s`` holds the clipping bounds, n and 1 in the arrays' dtype."""
    low, high, n, one = s[0], s[1], s[2], s[3]
    rows, columns = probs.shape
    loss = 0.0
    correct = 0
    for i in range(rows):
        label = labels[i]
        if label < 0 or label >= columns:
            raise IndexError("a class label is outside [0, classes)")
        best = 0
        for j in range(1, columns):
            if probs[i, j] > probs[i, best]:
                best = j
        if best == label:
            correct += 1
        loss -= np.log(min(max(probs[i, label], low), high))
        if gradient:
            for j in range(columns):
                dinputs[i, j] = probs[i, j] / n
            dinputs[i, label] = (probs[i, label] - one) / n
    return loss, correct


def _crossentropy_one_hot(probs, targets, s, dinputs, gradient):  # pragma: no cover
    """As ``_crossentropy_labels``, for rows of probabilities as targets (one-hot or smoothed):
    a prediction is right where both rows' first maxima fall on the same class."""
    low, high, n = s[0], s[1], s[2]
    rows, columns = probs.shape
    loss = 0.0
    correct = 0
    for i in range(rows):
        best, wanted = 0, 0
        confidence = low - low
        for j in range(columns):
            if probs[i, j] > probs[i, best]:
                best = j
            if targets[i, j] > targets[i, wanted]:
                wanted = j
            confidence += min(max(probs[i, j], low), high) * targets[i, j]
            if gradient:
                dinputs[i, j] = (probs[i, j] - targets[i, j]) / n
        if best == wanted:
            correct += 1
        loss -= np.log(confidence)
    return loss, correct


def _relu_backward(dvalues, inputs, s, dinputs):  # pragma: no cover - compiled by numba
    """The gradient times 1 where the input was positive and times 0 elsewhere (so NaN and
    infinity propagate as in the reference's product with the mask)."""
    zero, one = s[0], s[1]
    rows, columns = dvalues.shape
    for i in range(rows):
        for j in range(columns):
            dinputs[i, j] = dvalues[i, j] * (one if inputs[i, j] > 0 else zero)


KERNELS = {
    "add_row": Kernel(_add_row),
    "relu": Kernel(_relu),
    "shift_rows": Kernel(_shift_rows),
    "normalize_rows": Kernel(_normalize_rows),
    "crossentropy_labels": Kernel(_crossentropy_labels),
    "crossentropy_one_hot": Kernel(_crossentropy_one_hot),
    "relu_backward": Kernel(_relu_backward),
}


class JitBackend(NumpyBackend):
    """NumPy with numba kernels for the hot steps; its name is still ``"numpy"``.

    ``fast_path`` is ``"numba"``: an optimizer runs its compiled update, or its NumPy one where
    it has none (``fallback_paths``). ``get_backend("numpy")`` gives one where :func:`enabled`;
    made directly, it runs compiled whatever ``XPNN_JIT`` says (numba installed).
    """

    fast_path = "numba"
    fallback_paths = ("numpy",)

    def __init__(self, dtype: str = "float32") -> None:
        NumpyBackend.__init__(self, dtype)
        #: ``XPNN_JIT_THREADS`` as it was when the backend was made (see :func:`threads`).
        self.threads = threads()

    def elementwise(self, kernel: Kernel, arrays: tuple[np.ndarray, ...], s: np.ndarray) -> None:
        """``kernel(*arrays, s)`` over flat arrays, whose elements it treats one by one: on a
        buffer of ``PARALLEL_FROM`` values or more, in parts on up to ``threads`` threads (the
        kernels release the GIL), which give the same numbers as one pass."""
        size = arrays[0].size
        parts = min(self.threads, size // (PARALLEL_FROM // 2)) if size >= PARALLEL_FROM else 1
        if parts <= 1:
            kernel(*arrays, s)
        else:
            _in_parts(kernel, arrays, s, parts)

    def affine(self, inputs: Any, weights: Any, biases: Any) -> Any:
        """``Backend.affine``: the product through BLAS, the biases added in a compiled pass
        (NumPy's broadcast add runs one short inner loop per row)."""
        output = self.matmul(inputs, weights)
        if output.ndim != 2 or biases.shape != (1, output.shape[1]) or biases.dtype != output.dtype:
            output += biases
            return output
        KERNELS["add_row"](output, biases)
        return output

    def relu(self, inputs: Any) -> Any:
        """``Backend.relu`` in one compiled pass (NumPy's maximum with a scalar is several
        times slower than its plain element-wise loops)."""
        if inputs.ndim != 2:
            return NumpyBackend.relu(self, inputs)
        output = np.empty_like(inputs)
        KERNELS["relu"](inputs, scalars(inputs.dtype, 0.0), output)
        return output

    def softmax(self, inputs: Any) -> Any:
        """``Backend.softmax``: compiled passes for the shift and the division, NumPy's
        vectorised ``exp`` between them (a compiled scalar ``exp`` is several times slower, the
        more so where it underflows)."""
        if inputs.ndim != 2 or 0 in inputs.shape:
            return NumpyBackend.softmax(self, inputs)
        output = np.empty_like(inputs)
        KERNELS["shift_rows"](inputs, output)
        np.exp(output, out=output)
        KERNELS["normalize_rows"](output, scalars(inputs.dtype, 0.0))
        return output

    def softmax_crossentropy(
        self, probs: Any, y_true: Any, epsilon: float, *, gradient: bool = True
    ) -> tuple[Any, Any, Any]:
        """``Backend.softmax_crossentropy`` in one compiled pass over the batch."""
        if probs.ndim != 2 or 0 in probs.shape:
            return NumpyBackend.softmax_crossentropy(
                self, probs, y_true, epsilon, gradient=gradient
            )
        s = scalars(probs.dtype, epsilon, 1 - epsilon, probs.shape[0], 1.0)
        dinputs = np.empty_like(probs) if gradient else np.empty((0, 0), probs.dtype)
        name = "crossentropy_labels" if y_true.ndim == 1 else "crossentropy_one_hot"
        loss, correct = KERNELS[name](probs, y_true, s, dinputs, gradient)
        # NumPy scalars, as NumPy's own sums give (the reference's loss is one too).
        loss, correct = probs.dtype.type(loss), self.xp.int64(correct)
        return loss, correct, dinputs if gradient else None

    def relu_backward(self, dvalues: Any, inputs: Any) -> Any:
        """``Backend.relu_backward`` in one compiled pass."""
        if dvalues.ndim != 2 or dvalues.shape != inputs.shape:
            return NumpyBackend.relu_backward(self, dvalues, inputs)
        dinputs = np.empty_like(dvalues)
        KERNELS["relu_backward"](dvalues, inputs, scalars(dvalues.dtype, 0.0, 1.0), dinputs)
        return dinputs
