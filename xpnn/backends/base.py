"""The reference backend: the array API standard alone, and choosing a backend by name.

A :class:`Backend` carries the array namespace ``xp``, the device and the float dtype, and the few
operations the array API standard lacks (host <-> device transfer, one-hot, synchronisation).
This base class is written against the standard alone and is the reference; a library's
subclass (``numpy.py``, ``cupy.py``, ``strict.py`` beside this module) overrides a method only
for speed, and the tests compare it with the reference. A backend is shared by every model on
its library and dtype, so it keeps nothing that belongs to one computation.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from .._checks import shown

__all__ = ["BACKEND_NAMES", "Backend", "check_backend_name", "get_backend", "to_numpy"]

BACKEND_NAMES = ("numpy", "cupy", "torch", "strict", "auto")
FLOAT_DTYPES = ("float32", "float64")
#: The backend that computes on each array library's arrays, by the library's module name.
_BACKEND_OF = {"cupy": "cupy", "torch": "torch", "array_api_strict": "strict"}

log = logging.getLogger("xpnn")


class Backend:
    """An array library, a device on it and a float dtype.

    Layers use ``backend.xp`` for the maths and the backend's methods to create arrays, so the
    same layer code runs on every library.
    """

    name = "generic"
    #: Which library's versions of the optimizer updates fit this backend's arrays: "numpy"
    #: (in place), "cupy" (fused kernels) or "torch" (in place); None runs each update's
    #: array-API reference.
    fast_path: str | None = None
    #: Where an update has no version for ``fast_path``, the ones to try next, in order (the
    #: compiled NumPy backend falls back on the in-place NumPy versions).
    fallback_paths: tuple[str, ...] = ()
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
        """``a`` on the device in ``dtype`` (the float dtype by default). Host arrays move to
        the device; an array already on it in that dtype (a NumPy array on the numpy backend
        included) is returned as it is, not copied: copy it first to change one side only."""
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
        device_array = library in ("cupy", "torch") or hasattr(a, "__cuda_array_interface__")
        if not device_array and not hasattr(a, "__array_namespace__"):
            return  # a list, or another host container: NumPy converts it
        where = getattr(a, "device", "?")
        backend = _BACKEND_OF.get(library)
        make = f"create it with backend={backend!r}, or " if backend else ""
        raise TypeError(
            f"{argument} is a {library} array on device {where}, but this object works on the "
            f"{self.name!r} backend ({self.device}); {make}pass host (NumPy) data"
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

    def keep_where(self, values: Any, condition: Any) -> Any:
        """``values`` where ``condition`` holds and 0 elsewhere (the book's ``d[x <= 0] = 0``)."""
        return values * self.xp.astype(condition, self.dtype)

    def flush_subnormals(self, *arrays: Any) -> None:
        """Set the values of ``arrays`` too small to be normal floats to zero, in place.

        An optimizer state that decays while its gradient stays zero (a dead ReLU unit) ends
        stuck there: 0.9 times the smallest subnormal rounds back to itself. CPUs compute on
        subnormals several times slower, and NumPy cannot switch them off.
        """
        tiny = self.xp.finfo(self.dtype).smallest_normal
        for a in arrays:
            a[...] = self.keep_where(a, self.xp.abs(a) >= tiny)

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

    def affine(self, inputs: Any, weights: Any, biases: Any) -> Any:
        """``inputs @ weights + biases``, in one new array."""
        output = self.matmul(inputs, weights)
        output += biases  # in place: one array, not two
        return output

    def relu(self, inputs: Any) -> Any:
        """``max(inputs, 0)``, element-wise."""
        return self.xp.maximum(inputs, 0.0)

    def softmax(self, inputs: Any) -> Any:
        """Each row's exponentials over their sum, the row shifted by its maximum first so
        ``exp`` cannot overflow."""
        xp = self.xp
        exp_values = xp.exp(inputs - xp.max(inputs, axis=1, keepdims=True))
        return exp_values / xp.sum(exp_values, axis=1, keepdims=True)

    def relu_backward(self, dvalues: Any, inputs: Any) -> Any:
        """The gradient where ``inputs`` was positive, 0 elsewhere."""
        return self.keep_where(dvalues, inputs > 0)

    def softmax_crossentropy(
        self, probs: Any, y_true: Any, epsilon: float, *, gradient: bool = True
    ) -> tuple[Any, Any, Any]:
        """Softmax outputs ``probs`` against labels, in one go: the summed cross-entropy (of
        ``probs`` clipped to ``[epsilon, 1 - epsilon]``, a 0-d array), the right predictions
        (a 0-d integer array: the first most probable class against the label, or against the
        target row's first maximum) and, if ``gradient``, the gradient with respect to the
        softmax inputs, ``(probs - one_hot) / n`` (else None).

        ``y_true`` holds class indices (1-D) or rows of probabilities (2-D), on the device.
        """
        xp = self.xp
        clipped = xp.clip(probs, epsilon, 1 - epsilon)
        predicted = xp.argmax(probs, axis=1)
        if y_true.ndim == 1:
            confidences = self.take_labels(clipped, y_true)
            right = predicted == y_true
            targets = self.one_hot(y_true, probs.shape[1]) if gradient else None
        else:
            confidences = xp.sum(clipped * y_true, axis=1)
            right = predicted == xp.argmax(y_true, axis=1)
            targets = y_true
        loss = xp.sum(-xp.log(confidences))
        dinputs = None
        if gradient:
            dinputs = probs - targets
            dinputs /= probs.shape[0]
        return loss, xp.count_nonzero(right), dinputs


#: What makes a backend, by name (a class, or a function of the dtype that picks one);
#: ``xpnn/backends/__init__.py`` fills it with one per library.
_CLASSES: dict[str, Any] = {}
_cache: dict[tuple[str, str], Backend] = {}


def get_backend(name: str | Backend = "numpy", dtype: Any = None) -> Backend:
    """The backend called ``name`` with float ``dtype``.

    ``"auto"`` picks CuPy where a CUDA device is usable and NumPy otherwise, and logs its choice
    (never torch: torch is chosen by name). ``"torch:<device>"`` names torch's device.
    """
    if isinstance(name, Backend):
        return name if dtype is None else get_backend(name.name, dtype)
    dtype = _dtype_name(dtype)
    if name == "auto":
        name, _ = auto_choice()
    library, device = check_backend_name(name)
    key = (name, dtype)
    if key not in _cache:
        make = _CLASSES[library]
        _cache[key] = make(dtype) if device is None else make(dtype, device)
    return _cache[key]


def check_backend_name(name: Any) -> tuple[str, str | None]:
    """The library and device (None: the library's choice) that backend ``name`` names;
    ValueError listing the valid names for any other."""
    library, colon, device = name.partition(":") if isinstance(name, str) else (None, "", "")
    takes_device = library in _CLASSES and getattr(_CLASSES[library], "takes_device", False)
    if library not in (*_CLASSES, "auto") or (colon and not (device and takes_device)):
        raise ValueError(
            f"backend must be one of {', '.join(map(repr, BACKEND_NAMES))} or 'torch:<device>' "
            f"('torch:cpu', 'torch:cuda', 'torch:mps'); got {shown(name)}"
        )
    return library, device if colon else None


def auto_choice() -> tuple[str, str]:
    """The backend ``"auto"`` picks (CuPy where it computes on a device, else NumPy) and why,
    logged (logger ``xpnn``)."""
    level = logging.INFO
    try:
        problem = _CLASSES["cupy"].unusable()
    except ImportError:
        choice = ("numpy", "CuPy is not installed")
    else:
        choice = ("cupy", "a CUDA device is usable")
        if problem is not None:  # installed for a GPU, yet it cannot compute: worth a warning
            choice, level = ("numpy", problem), logging.WARNING
    log.log(level, "backend='auto' chose %r: %s", *choice)
    return choice


def _dtype_name(dtype: Any) -> str:
    if dtype is None:
        return "float32"
    try:
        name = dtype if isinstance(dtype, str) else np.dtype(dtype).name
    except TypeError:
        name = repr(dtype)
    if name not in FLOAT_DTYPES:
        raise ValueError(f"dtype must be 'float32' or 'float64'; got {shown(dtype)}")
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
    if library == "torch":  # any device, with or without autograd
        return a.numpy(force=True)
    if library == "array_api_strict":
        xp = a.__array_namespace__()
        return np.asarray(a.to_device(xp.Device("CPU_DEVICE")))
    return np.asarray(a)
