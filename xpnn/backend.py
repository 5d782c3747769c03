"""Array backends: the one place that knows which array library does the maths.

A :class:`Backend` carries the array namespace ``xp``, the device and the float dtype, and the few
operations the array API standard lacks (host <-> device transfer, one-hot, synchronisation).
The base class is written against the standard alone and is the reference; a library's subclass
overrides a method only for speed, and the tests compare it with the reference.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

import numpy as np

__all__ = ["BACKEND_NAMES", "Backend", "get_backend", "to_numpy"]

BACKEND_NAMES = ("numpy", "cupy", "strict", "auto")
FLOAT_DTYPES = ("float32", "float64")

log = logging.getLogger("xpnn")


class Backend:
    """An array library, a device on it and a float dtype.

    Layers use ``backend.xp`` for the maths and the backend's methods to create arrays, so the
    same layer code runs on every library.
    """

    name = "generic"
    #: True where arrays live in host memory, so reading one costs no device synchronisation.
    on_host = False

    def __init__(self, xp: Any, device: Any, dtype: str = "float32", *, pass_device: bool = True):
        self.xp = xp
        self.device = device
        self.dtype_name = dtype
        self.dtype = getattr(xp, dtype)
        self.index_dtype = xp.int64
        # Creation functions take device= where the library follows the standard; CuPy's use
        # the current device instead.
        self._on_device = {"device": device} if pass_device else {}
        self.array_type = type(xp.zeros(0, **self._on_device))
        self._aranges: dict[int, Any] = {}
        #: ``xp``'s element-wise functions with an ``out=`` argument, for the buffers a layer
        #: keeps while training; NumPy's and CuPy's own functions compute straight into it.
        self.ops: Any = WithOut(xp)

    def __repr__(self) -> str:
        return f"Backend(name={self.name!r}, device={self.device!r}, dtype={self.dtype_name!r})"

    def with_dtype(self, dtype: str) -> Backend:
        """The same library and device with another float dtype."""
        return get_backend(self.name, dtype)

    # -- arrays on the device -------------------------------------------------------------------

    def is_own(self, a: Any) -> bool:
        """True for an array of this backend's library on its device."""
        return type(a) is self.array_type and a.device == self.device

    def asarray(self, a: Any, dtype: Any = None) -> Any:
        """``a`` on the device in ``dtype`` (the float dtype by default); host arrays are copied."""
        dtype = self.dtype if dtype is None else dtype
        if self.is_own(a):
            return a if a.dtype == dtype else self.xp.astype(a, dtype)
        return self.xp.asarray(to_numpy(a), dtype=dtype, **self._on_device)

    def ensure(self, a: Any, argument: str = "inputs") -> Any:
        """``a`` as a float array here: host data moves, a foreign device array is refused."""
        if self.is_own(a):
            return a if a.dtype == self.dtype else self.xp.astype(a, self.dtype)
        self.refuse_foreign(a, argument)
        return self.asarray(a)

    def ensure_labels(self, y: Any, argument: str = "y_true") -> Any:
        """Class labels on the device: integer indices (1-D) or one-hot float rows (2-D)."""
        if not self.is_own(y):
            self.refuse_foreign(y, argument)
            y = to_numpy(y)
        if y.ndim == 2:
            return self.asarray(y)
        if self.is_own(y):
            return y if y.dtype == self.index_dtype else self.xp.astype(y, self.index_dtype)
        return self.asarray(y, dtype=self.index_dtype)

    def refuse_foreign(self, a: Any, argument: str) -> None:
        """TypeError naming ``argument`` if ``a`` is an array of another device library, or a
        masked array (see ``refuse_masked``)."""
        refuse_masked(a, argument)
        library = type(a).__module__.partition(".")[0]
        if library in ("numpy", "builtins") or type(a) is self.array_type:
            return  # host data, or this library on another of its devices: both move safely
        # CuPy's arrays have no __array_namespace__ (CuPy 14), but every GPU array library
        # exposes __cuda_array_interface__.
        device_array = library == "cupy" or hasattr(a, "__cuda_array_interface__")
        if not device_array and not hasattr(a, "__array_namespace__"):
            return  # a list, or another host container: NumPy converts it
        where = getattr(a, "device", "?")
        raise TypeError(
            f"{argument} is a {library} array on device {where}, but this object works on the "
            f"{self.name!r} backend ({self.device}); create it with backend={library!r}, or pass "
            f"host (NumPy) data"
        )

    def zeros(self, shape: int | tuple[int, ...], dtype: Any = None) -> Any:
        """Zeros on the device, in the float dtype unless told."""
        return self.xp.zeros(shape, dtype=self.dtype if dtype is None else dtype, **self._on_device)

    def empty(self, shape: int | tuple[int, ...]) -> Any:
        """An array of the float dtype whose values are yet to be written."""
        return self.xp.empty(shape, dtype=self.dtype, **self._on_device)

    def arange(self, n: int) -> Any:
        """0, 1, ..., n - 1 as indices on the device."""
        return self.xp.arange(n, dtype=self.index_dtype, **self._on_device)

    def one_hot(self, labels: Any, classes: int) -> Any:
        """Rows of the identity picked by integer ``labels``, in the float dtype."""
        return self.xp.astype(labels[:, None] == self._arange(classes), self.dtype)

    def _arange(self, n: int) -> Any:
        """``arange(n)``, kept: the hot loop asks for the same few ones every step."""
        if n not in self._aranges:
            self._aranges[n] = self.arange(n)
        return self._aranges[n]

    def take_labels(self, a: Any, labels: Any) -> Any:
        """``a[i, labels[i]]`` for every row ``i``: the value each row gives its label."""
        return self.xp.take_along_axis(a, labels[:, None], axis=1)[:, 0]

    def keep_where(self, values: Any, condition: Any, *, out: Any = None) -> Any:
        """``values`` where ``condition`` holds and 0 elsewhere (the book's ``d[x <= 0] = 0``)."""
        return self.ops.multiply(values, self.xp.astype(condition, self.dtype), out=out)

    def flush_subnormals(self, *arrays: Any) -> None:
        """Set the values of ``arrays`` too small to be normal floats to zero, in place.

        An optimizer state that decays while its gradient stays zero (a dead ReLU unit) ends
        stuck there: 0.9 times the smallest subnormal rounds back to itself. CPUs compute on
        subnormals several times slower, and NumPy cannot switch them off.
        """
        tiny = self.xp.finfo(self.dtype).smallest_normal
        for a in arrays:
            self.keep_where(a, self.xp.abs(a) >= tiny, out=a)

    def to_numpy(self, a: Any) -> np.ndarray:
        """``a`` as a NumPy array on the host."""
        return to_numpy(a)

    def synchronize(self) -> None:
        """Wait until the device has finished queued work (for timing)."""

    # -- random numbers ---------------------------------------------------------------------------

    def random_generator(self, seed: int | None) -> Any:
        """A seeded generator for draws on the device (dropout masks)."""
        return np.random.default_rng(seed)

    def random(self, generator: Any, shape: tuple[int, ...]) -> Any:
        """Uniform samples in [0, 1) of ``shape`` in the float dtype, from ``generator``.

        The array API has no random numbers, so the reference draws on the host and moves them;
        a library with a generator of its own (NumPy, CuPy) draws where its arrays live.
        """
        return self.asarray(generator.random(shape, dtype=self.dtype_name))

    # -- operations with a fast path on some libraries -----------------------------------------

    def matmul(self, a: Any, b: Any, *, out: Any = None) -> Any:
        """``a @ b``, written into ``out`` where one is given."""
        if out is None:
            return a @ b
        out[...] = a @ b
        return out

    def sum_rows(self, a: Any, *, out: Any) -> Any:
        """Column sums of ``a`` (shape ``(1, n)``) written into ``out``."""
        out[...] = self.xp.sum(a, axis=0, keepdims=True)
        return out

    def adam_update(
        self,
        param: Any,
        grad: Any,
        momentum: Any,
        cache: Any,
        *,
        scratch: dict | None = None,
        learning_rate: float,
        beta_1: float,
        beta_2: float,
        epsilon: float,
        correction_1: float,
        correction_2: float,
    ) -> None:
        """One Adam step in place, the seed's formulas; corrections are ``1 - beta ** t``.

        ``scratch``, in every update: a dict the caller owns, where a library may keep
        temporary arrays from one step to the next; the reference needs none.
        """
        momentum[...] = beta_1 * momentum + (1 - beta_1) * grad
        cache[...] = beta_2 * cache + (1 - beta_2) * grad**2
        corrected_momentum = momentum / correction_1
        corrected_cache = cache / correction_2
        param += -learning_rate * corrected_momentum / (self.xp.sqrt(corrected_cache) + epsilon)

    def sgd_update(
        self,
        param: Any,
        grad: Any,
        momentums: Any,
        *,
        scratch: dict | None = None,
        learning_rate: float,
        momentum: float,
    ) -> None:
        """One SGD step in place; with momentum, ``momentums`` holds the previous update."""
        if momentums is None:
            param += -learning_rate * grad
        else:
            momentums[...] = momentum * momentums - learning_rate * grad
            param += momentums

    def adagrad_update(
        self,
        param: Any,
        grad: Any,
        cache: Any,
        *,
        scratch: dict | None = None,
        learning_rate: float,
        epsilon: float,
    ) -> None:
        """One Adagrad step in place: the cache sums every squared gradient so far."""
        cache += grad**2
        param += -learning_rate * grad / (self.xp.sqrt(cache) + epsilon)

    def rmsprop_update(
        self,
        param: Any,
        grad: Any,
        cache: Any,
        *,
        scratch: dict | None = None,
        learning_rate: float,
        epsilon: float,
        rho: float,
    ) -> None:
        """One RMSprop step in place: the cache is a moving average of squared gradients."""
        cache[...] = rho * cache + (1 - rho) * grad**2
        param += -learning_rate * grad / (self.xp.sqrt(cache) + epsilon)


class WithOut:
    """An array-API namespace's functions taking ``out=`` as NumPy's do: the standard has no
    such argument, so the result is computed, then written into ``out`` where one is given."""

    def __init__(self, xp: Any) -> None:
        self._xp = xp

    def __getattr__(self, name: str) -> Any:
        function = getattr(self._xp, name)

        def written(*args: Any, out: Any = None) -> Any:
            result = function(*args)
            if out is None:
                return result
            out[...] = result
            return out

        setattr(self, name, written)  # looked up once per name
        return written


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


#: NumPy's own ``dot``, taken at import: the book's ``nnfs.init()`` replaces ``np.dot`` with a
#: wrapper that refuses ``out=``. Where it ran first, ``np.matmul`` (which it leaves alone, and
#: which gives the same results on 2-D arrays) stands in.
_dot = np.dot if getattr(np.dot, "__module__", None) == "numpy" else np.matmul


class NumpyBackend(Backend):
    """NumPy on the CPU, with in-place (``out=``) versions of the hot operations.

    Optimizer updates run the reference's operations in the same order, so the results are
    bit-identical, in place through two scratch arrays instead of parameter-sized temporaries.
    The scratch arrays live in the ``scratch`` dict the caller (the optimizer) owns: the backend
    is shared by every model, so it keeps nothing that belongs to one computation.
    """

    name = "numpy"
    on_host = True

    def __init__(self, dtype: str = "float32") -> None:
        Backend.__init__(self, _NumpyNamespace(), "cpu", dtype, pass_device=False)
        self.ops = np
        self._constants: dict[tuple[str, int], np.ndarray] = {}

    def is_own(self, a: Any) -> bool:
        return type(a) is np.ndarray

    def ensure(self, a: Any, argument: str = "inputs") -> Any:
        if type(a) is np.ndarray and a.dtype == self.dtype:
            return a  # the hot loop's case, checked first
        return Backend.ensure(self, a, argument)

    def matmul(self, a: Any, b: Any, *, out: Any = None) -> Any:
        if a.ndim == b.ndim == 2 and (out is None or out.flags.c_contiguous):
            return _dot(a, b, out=out)  # less machinery than np.matmul
        return np.matmul(a, b, out=out)

    def take_labels(self, a: Any, labels: Any) -> Any:
        return a[self._arange(a.shape[0]), labels]

    def one_hot(self, labels: Any, classes: int) -> Any:
        return self._constant("eye", classes).take(labels, axis=0)  # rows of the identity

    def sum_rows(self, a: Any, *, out: Any) -> Any:
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
        return generator.random(shape, dtype=self.dtype_name)

    def adam_update(self, param, grad, momentum, cache, *, scratch=None, **scalars) -> None:
        _adam(param, grad, momentum, cache, *_scratch_pair(scratch, param), **scalars)

    def sgd_update(self, param, grad, momentums, *, scratch=None, **scalars) -> None:
        t1, t2 = _scratch_pair(scratch, param)
        if momentums is None:
            _sgd(param, grad, t1, t2, **scalars)
        else:
            _sgd_momentum(param, grad, momentums, t1, t2, **scalars)

    def adagrad_update(self, param, grad, cache, *, scratch=None, **scalars) -> None:
        _adagrad(param, grad, cache, *_scratch_pair(scratch, param), **scalars)

    def rmsprop_update(self, param, grad, cache, *, scratch=None, **scalars) -> None:
        _rmsprop(param, grad, cache, *_scratch_pair(scratch, param), **scalars)


def _scratch_pair(scratch: dict | None, like: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two arrays shaped as ``like`` to compute in: kept in ``scratch`` for the next step, or
    fresh ones where the caller keeps none."""
    if scratch is None:
        return np.empty_like(like), np.empty_like(like)
    key = (like.shape, like.dtype.str)
    pair = scratch.get(key)
    if pair is None:
        pair = scratch[key] = (np.empty_like(like), np.empty_like(like))
    return pair


# In-place update kernels for NumPy: the reference formulas, operation for operation, with
# t1 and t2 as scratch.


def _adam(
    p, g, m, c, t1, t2, *, learning_rate, beta_1, beta_2, epsilon, correction_1, correction_2
):
    m *= beta_1
    np.multiply(g, 1 - beta_1, out=t1)
    m += t1
    c *= beta_2
    np.multiply(g, g, out=t1)
    t1 *= 1 - beta_2
    c += t1
    np.divide(c, correction_2, out=t1)
    np.sqrt(t1, out=t1)
    t1 += epsilon
    np.divide(m, correction_1, out=t2)
    t2 *= -learning_rate
    t2 /= t1
    p += t2


def _sgd(p, g, t1, t2, *, learning_rate, momentum):
    np.multiply(g, -learning_rate, out=t1)
    p += t1


def _sgd_momentum(p, g, u, t1, t2, *, learning_rate, momentum):
    u *= momentum
    np.multiply(g, learning_rate, out=t1)
    u -= t1
    p += u


def _adagrad(p, g, c, t1, t2, *, learning_rate, epsilon):
    np.multiply(g, g, out=t1)
    c += t1
    _scaled_step(p, g, c, t1, t2, learning_rate, epsilon)


def _rmsprop(p, g, c, t1, t2, *, learning_rate, epsilon, rho):
    c *= rho
    np.multiply(g, g, out=t1)
    t1 *= 1 - rho
    c += t1
    _scaled_step(p, g, c, t1, t2, learning_rate, epsilon)


def _scaled_step(p, g, c, t1, t2, learning_rate, epsilon):
    """``p += -learning_rate * g / (sqrt(c) + epsilon)``, in the reference's order."""
    np.sqrt(c, out=t1)
    t1 += epsilon
    np.multiply(g, -learning_rate, out=t2)
    t2 /= t1
    p += t2


class CupyBackend(Backend):
    """CuPy on the current CUDA device."""

    name = "cupy"

    def __init__(self, dtype: str = "float32") -> None:
        cupy = _import_cupy()
        Backend.__init__(self, cupy, cupy.cuda.Device(), dtype, pass_device=False)
        self.ops = cupy

    def is_own(self, a: Any) -> bool:
        return type(a) is self.array_type

    def synchronize(self) -> None:
        self.xp.cuda.get_current_stream().synchronize()

    def random_generator(self, seed: int | None) -> Any:
        return self.xp.random.default_rng(seed)

    def random(self, generator: Any, shape: tuple[int, ...]) -> Any:
        return generator.random(shape, dtype=self.dtype)

    def matmul(self, a: Any, b: Any, *, out: Any = None) -> Any:
        return self.xp.matmul(a, b, out=out)

    # Optimizer updates as one fused kernel each: one pass over the arrays instead of a dozen,
    # with every scalar worked out on the host so a step never waits for the device.

    def adam_update(
        self,
        param: Any,
        grad: Any,
        momentum: Any,
        cache: Any,
        *,
        scratch: dict | None = None,
        learning_rate: float,
        beta_1: float,
        beta_2: float,
        epsilon: float,
        correction_1: float,
        correction_2: float,
    ) -> None:
        self._kernel("adam")(
            grad, beta_1, 1 - beta_1, beta_2, 1 - beta_2, epsilon, correction_1, correction_2,
            -learning_rate, param, momentum, cache,
        )  # fmt: skip

    def sgd_update(
        self,
        param: Any,
        grad: Any,
        momentums: Any,
        *,
        scratch: dict | None = None,
        learning_rate: float,
        momentum: float,
    ) -> None:
        if momentums is None:
            self._kernel("sgd")(grad, -learning_rate, param)
        else:
            self._kernel("sgd_momentum")(grad, momentum, learning_rate, param, momentums)

    def adagrad_update(
        self,
        param: Any,
        grad: Any,
        cache: Any,
        *,
        scratch: dict | None = None,
        learning_rate: float,
        epsilon: float,
    ) -> None:
        self._kernel("adagrad")(grad, epsilon, -learning_rate, param, cache)

    def rmsprop_update(
        self,
        param: Any,
        grad: Any,
        cache: Any,
        *,
        scratch: dict | None = None,
        learning_rate: float,
        epsilon: float,
        rho: float,
    ) -> None:
        self._kernel("rmsprop")(grad, rho, 1 - rho, epsilon, -learning_rate, param, cache)

    def _kernel(self, name: str) -> Any:
        """The fused update ``name`` of ``CUPY_KERNELS``, compiled on first use."""
        kernels = self.__dict__.setdefault("_kernels", {})
        if name not in kernels:
            inputs, outputs, body = CUPY_KERNELS[name]
            # No fused multiply-add: each operation rounds as the reference's separate ones do.
            kernels[name] = self.xp.ElementwiseKernel(
                inputs, outputs, body, f"xpnn_{name}", options=("--fmad=false",)
            )
        return kernels[name]


#: CUDA bodies of CuPy's fused optimizer updates: the reference formulas of ``Backend``, in the
#: same order of operations. ``T`` is the arrays' float type; the scalars come from the host.
CUPY_KERNELS = {
    "adam": (
        "T grad, T beta_1, T one_minus_beta_1, T beta_2, T one_minus_beta_2, T epsilon, "
        "T correction_1, T correction_2, T neg_learning_rate",
        "T param, T momentum, T cache",
        "momentum = beta_1 * momentum + one_minus_beta_1 * grad;\n"
        "cache = beta_2 * cache + one_minus_beta_2 * (grad * grad);\n"
        "param += neg_learning_rate * (momentum / correction_1)"
        " / (sqrt(cache / correction_2) + epsilon);",
    ),
    "sgd": ("T grad, T neg_learning_rate", "T param", "param += neg_learning_rate * grad;"),
    "sgd_momentum": (
        "T grad, T momentum, T learning_rate",
        "T param, T momentums",
        "momentums = momentum * momentums - learning_rate * grad;\nparam += momentums;",
    ),
    "adagrad": (
        "T grad, T epsilon, T neg_learning_rate",
        "T param, T cache",
        "cache += grad * grad;\nparam += neg_learning_rate * grad / (sqrt(cache) + epsilon);",
    ),
    "rmsprop": (
        "T grad, T rho, T one_minus_rho, T epsilon, T neg_learning_rate",
        "T param, T cache",
        "cache = rho * cache + one_minus_rho * (grad * grad);\n"
        "param += neg_learning_rate * grad / (sqrt(cache) + epsilon);",
    ),
}


class StrictBackend(Backend):
    """array-api-strict on its ``device1``: a stand-in for a foreign device in tests.

    It refuses to mix devices and to convert to NumPy implicitly, as CuPy does, so code that
    passes here has no hidden host round trip.
    """

    name = "strict"

    def __init__(self, dtype: str = "float32") -> None:
        try:
            xp = importlib.import_module("array_api_strict")
        except ImportError as error:
            raise ImportError(
                'backend="strict" needs array-api-strict: pip install "xpnn[test]"'
            ) from error
        Backend.__init__(self, xp, xp.Device("device1"), dtype)


CUPY_EXTRAS = 'pip install "xpnn[cuda12]" (CUDA 12) or "xpnn[cuda13]" (CUDA 13)'

#: The cupy module last probed and what the probe found (None: it works). Probing compiles a
#: kernel, so it runs once per process.
_cupy_probed: tuple[Any, str | None] | None = None


def _import_cupy() -> Any:
    """The cupy module, once it has run a small computation on the device; else an error that
    says what is missing."""
    cupy, problem = _cupy()
    if problem is not None:
        raise RuntimeError(f'backend="cupy": {problem}; use backend="numpy", or "auto" to choose')
    return cupy


def _cupy() -> tuple[Any, str | None]:
    """The cupy module and why it cannot compute here (None: it can); ImportError without it."""
    global _cupy_probed
    try:
        cupy = importlib.import_module("cupy")
    except ImportError as error:
        raise ImportError(f'backend="cupy" needs CuPy: {CUPY_EXTRAS}') from error
    if _cupy_probed is None or _cupy_probed[0] is not cupy:
        _cupy_probed = (cupy, _probe_cupy(cupy))
    return _cupy_probed


def _probe_cupy(cupy: Any) -> str | None:
    """Why CuPy cannot compute here, or None where an allocation, an element-wise kernel and
    a matrix product run and give the right numbers.

    ``cupy.cuda.is_available()`` only counts devices: without NVRTC or cuBLAS it is True and
    the first kernel fails, so the probe runs one of each.
    """
    if not cupy.cuda.is_available():
        return "CuPy is installed but no usable CUDA device was found (no GPU, or no driver)"
    step = "allocating memory on the device"
    try:
        a = cupy.arange(6, dtype=cupy.float32)
        step = "an element-wise kernel (compiled by NVRTC)"
        b = a * 2 + 1
        step = "a matrix product (cuBLAS)"
        product = cupy.reshape(b, (2, 3)) @ cupy.reshape(a, (3, 2))
        values = product.get()
    except Exception as error:  # CuPy raises many kinds; the message is what matters
        reason = f"{type(error).__name__}: {error}".strip()
        return (
            f"CuPy sees a device but failed at {step}: {reason}. CuPy needs the CUDA "
            f"libraries (NVRTC, cuBLAS, cuRAND): {CUPY_EXTRAS} brings them, or install a CUDA "
            f"toolkit whose major version matches the CuPy package"
        )
    expected = (np.arange(1, 13, 2, dtype=np.float32).reshape(2, 3)) @ np.arange(6.0).reshape(3, 2)
    if not np.allclose(values, expected):
        return f"CuPy computed a wrong matrix product on the device ({values.tolist()})"
    return None


def cuda_available() -> bool:
    """True where CuPy is installed and a small computation ran on a CUDA device; never raises."""
    try:
        _import_cupy()
    except (ImportError, RuntimeError):
        return False
    return True


_CLASSES = {"numpy": NumpyBackend, "cupy": CupyBackend, "strict": StrictBackend}
_cache: dict[tuple[str, str], Backend] = {}


def get_backend(name: str | Backend = "numpy", dtype: Any = None) -> Backend:
    """The backend called ``name`` with float ``dtype``.

    ``"auto"`` picks CuPy where a CUDA device is usable and NumPy otherwise, and logs its choice.
    """
    if isinstance(name, Backend):
        return name if dtype is None else get_backend(name.name, dtype)
    dtype = _dtype_name(dtype)
    if name == "auto":
        name = _auto()
    if name not in _CLASSES:
        raise ValueError(
            f"backend must be one of {', '.join(map(repr, BACKEND_NAMES))}; got {name!r}"
        )
    key = (name, dtype)
    if key not in _cache:
        _cache[key] = _CLASSES[name](dtype)
    return _cache[key]


def _auto() -> str:
    """CuPy where it computes on a device, else NumPy, with the reason logged."""
    try:
        _, problem = _cupy()
    except ImportError:
        log.info("backend='auto' chose 'numpy': CuPy is not installed")
        return "numpy"
    if problem is not None:  # installed for a GPU, yet it cannot compute: worth a warning
        log.warning("backend='auto' chose 'numpy': %s", problem)
        return "numpy"
    log.info("backend='auto' chose 'cupy'")
    return "cupy"


def _dtype_name(dtype: Any) -> str:
    if dtype is None:
        return "float32"
    try:
        name = dtype if isinstance(dtype, str) else np.dtype(dtype).name
    except TypeError:
        name = repr(dtype)
    if name not in FLOAT_DTYPES:
        raise ValueError(f"dtype must be 'float32' or 'float64'; got {dtype!r}")
    return name


def refuse_masked(a: Any, argument: str) -> None:
    """TypeError naming ``argument`` if ``a`` is a NumPy masked array.

    Converting one to an array drops its mask, so the masked values would be computed with as if
    they were data.
    """
    if isinstance(a, np.ma.MaskedArray):
        raise TypeError(
            f"{argument} is a masked array (numpy.ma), whose mask xpnn cannot honour: converting "
            "it would take the masked values as data. Pass its .filled(value), or leave out the "
            "samples with masked values (np.ma.getdata() if none is masked)"
        )


def to_numpy(a: Any) -> np.ndarray:
    """``a`` as a NumPy array on the host, whatever backend it lives on."""
    if isinstance(a, np.ndarray):
        return a
    library = type(a).__module__.partition(".")[0]
    if library == "cupy":
        return a.get()
    if library == "array_api_strict":
        xp = a.__array_namespace__()
        return np.asarray(a.to_device(xp.Device("CPU_DEVICE")))
    return np.asarray(a)
