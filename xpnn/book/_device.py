"""Where the book's objects compute, and how their arrays look to the script around them.

A book script hands its objects NumPy arrays and reads theirs with NumPy
(``np.argmax(loss_activation.output, axis=1)``, ``f"{loss:.3f}"``). On the numpy backend the
objects' arrays are NumPy arrays. On a device backend (cupy, strict) each array a script can
read is an :class:`OnDevice`: the device array, kept there while it goes from one book object
to the next or meets Python numbers, and brought to the host only where NumPy or Python needs
its values.
"""

from __future__ import annotations

import operator
import os
from typing import Any

import numpy as np

from .._checks import ensure_numbers, shown
from ..backends import Backend, get_backend, jit, to_numpy
from ..backends.base import BACKEND_NAMES, FLOAT_DTYPES

__all__ = ["OnDevice", "Part", "current", "use"]

#: The environment variables read at import: the backend and the float dtype of the book's
#: objects (see ``use``).
BACKEND_VARIABLE = "XPNN_BOOK_BACKEND"
DTYPE_VARIABLE = "XPNN_BOOK_DTYPE"
EXACT_VARIABLE = "XPNN_BOOK_EXACT"

_settings: dict[str, Any] = {"backend": "numpy", "dtype": None, "exact": True}
_backends: dict[tuple[str, str], Backend] = {}


def use(backend: str = "numpy", dtype: str | None = None, *, exact: bool = True) -> None:
    """Make the book's objects created from now on compute on ``backend`` ("numpy", "cupy",
    "strict", "torch"), in ``dtype`` ("float32" or "float64"; None follows the arrays: float32 after
    ``nnfs.init()``, float64 without it, as the book's own arrays are).

    ``exact`` (NumPy only): the matrix products are the book's ``np.dot`` (after
    ``nnfs.init()``, its float64 products rounded to float32) and the arrays keep the dtypes
    NumPy's promotion gives them, so a script prints the book's very numbers. ``exact=False``
    runs xpnn's own products in the layer's dtype (float32 BLAS): faster, and the numbers
    agree with the book's to float32 rounding, which a long chaotic run can grow.

    Raises ValueError (unknown name), ImportError or RuntimeError (the library is missing or
    cannot compute) before anything changes.
    """
    if not isinstance(backend, str) or backend == "auto" or backend not in BACKEND_NAMES:
        names = ", ".join(repr(n) for n in BACKEND_NAMES if n != "auto")
        raise ValueError(f"backend must be one of {names}; got {shown(backend)}")
    if dtype is not None and (not isinstance(dtype, str) or dtype not in FLOAT_DTYPES):
        raise ValueError(f"dtype must be 'float32', 'float64' or None; got {shown(dtype)}")
    if not isinstance(exact, bool):
        raise TypeError(f"exact must be True or False; got {shown(exact)}")
    get_backend(backend, dtype or "float32")  # fails here, before the setting changes
    _settings.update(backend=backend, dtype=dtype, exact=exact)


def current() -> tuple[str, str | None]:
    """The backend name and dtype (None: follow the arrays) new book objects take; the name is
    "numpy-exact" for NumPy with the book's products (``use(exact=True)``)."""
    name = _settings["backend"]
    if name == "numpy" and _settings["exact"]:
        name = "numpy-exact"
    return name, _settings["dtype"]


def _from_environment() -> None:
    backend = os.environ.get(BACKEND_VARIABLE, "").strip() or "numpy"
    dtype = os.environ.get(DTYPE_VARIABLE, "").strip() or None
    exact = jit.switch(EXACT_VARIABLE, True, "the book's products", "xpnn's own products")
    try:
        use(backend, dtype, exact=exact)
    except ValueError as error:
        raise ValueError(f"{BACKEND_VARIABLE}/{DTYPE_VARIABLE}: {error}") from None


class _BookProducts:
    """The NumPy backend's products and column sums as the book computes them: ``np.dot`` as
    NumPy holds it when called (``nnfs.init()``'s float64 version where it ran) and
    ``np.sum``, so a script gives the book's own numbers, not merely close ones. Everything else
    (the compiled kernels included) is the backend's own."""

    def ensure(self, a: Any, argument: str = "inputs") -> Any:
        """A float32 or float64 NumPy array as it is, computed with as NumPy promotes it, as
        the book's arrays are (float64 targets make a float64 loss); anything else as the
        backend converts it."""
        if type(a) is np.ndarray and (a.dtype is _FLOAT32 or a.dtype is _FLOAT64):
            return a
        return super().ensure(a, argument)  # type: ignore[misc]

    def matmul(self, a: Any, b: Any, *, out: Any = None) -> Any:
        """``np.dot(a, b)``, written into ``out`` where one is given."""
        product = np.dot(a, b)
        if out is None:
            return product
        out[...] = product
        return out

    def sum_rows(self, a: Any, *, out: Any) -> Any:
        """``np.sum(a, axis=0, keepdims=True)`` into ``out``."""
        out[...] = np.sum(a, axis=0, keepdims=True)
        return out


class _BookDeviceProducts:
    """A device backend's arithmetic as the book's NumPy arithmetic goes: host float arrays
    keep their dtype (float64 targets and dropout masks stay float64), and while
    ``nnfs.init()``'s ``np.dot`` is in place, float32 products are taken in float64 and
    rounded, as it takes them."""

    def ensure(self, a: Any, argument: str = "inputs") -> Any:
        """``a`` on the device in its own float dtype (float32 or float64)."""
        if type(a) is np.ndarray and (a.dtype is _FLOAT32 or a.dtype is _FLOAT64):
            self.refuse_foreign(a, argument)  # type: ignore[attr-defined]
            return self.asarray(a, dtype=getattr(self.xp, a.dtype.name))  # type: ignore[attr-defined]
        if self.is_own(a) and float_name(a, self) is not None:  # type: ignore[attr-defined, arg-type]
            return a
        return super().ensure(a, argument)  # type: ignore[misc]

    def matmul(self, a: Any, b: Any, *, out: Any = None) -> Any:
        """``a @ b``; in float64, rounded to float32, where nnfs's ``np.dot`` would be."""
        xp = self.xp  # type: ignore[attr-defined]
        if getattr(np.dot, "__module__", "") == "nnfs.core":
            product = xp.astype(xp.astype(a, xp.float64) @ xp.astype(b, xp.float64), xp.float32)
        else:
            product = a @ b
        if out is None:
            return product
        out[...] = xp.astype(product, out.dtype)
        return out

    def sum_rows(self, a: Any, *, out: Any) -> Any:
        """``sum(a, axis=0, keepdims=True)`` into ``out``."""
        out[...] = self.xp.astype(self.xp.sum(a, axis=0, keepdims=True), out.dtype)  # type: ignore[attr-defined]
        return out


_FLOAT32, _FLOAT64 = np.dtype("float32"), np.dtype("float64")
_book_classes: dict[tuple[type, type], type] = {}


def backend_for(name: str, dtype: str) -> Backend:
    """The backend ``name`` in ``dtype`` for the book's objects, kept for the hot loop (on
    NumPy, one whose products are the book's: see ``_BookProducts``)."""
    key = (name, dtype)
    backend = _backends.get(key)
    if backend is None:
        backend = get_backend(name.removesuffix("-exact"), dtype)
        mixin = {"numpy-exact": _BookProducts, "strict": _BookDeviceProducts}.get(name)
        if name == "cupy" and _settings["exact"]:
            mixin = _BookDeviceProducts
        if mixin is not None:
            base = type(backend)
            if (mixin, base) not in _book_classes:
                made = type(f"Book{base.__name__}", (mixin, base), {})
                _book_classes[mixin, base] = made
            backend = _book_classes[mixin, base](dtype)
        _backends[key] = backend
    return backend


def float_name(a: Any, backend: Backend) -> str | None:
    """ "float32" or "float64" for an array of that dtype (NumPy's or ``backend``'s), else None."""
    dtype = getattr(a, "dtype", None)
    if dtype is None:
        return None
    if isinstance(dtype, np.dtype):
        return dtype.name if dtype.name in FLOAT_DTYPES else None
    for name in FLOAT_DTYPES:
        if dtype == getattr(backend.xp, name):
            return name
    return None


def device_array(a: Any) -> Any:
    """The device array inside an :class:`OnDevice`; anything else as it is."""
    return a.array if type(a) is OnDevice else a


class Part:
    """What every book object shares: its backend, chosen when it is made (the library) and by
    the arrays it is given (the dtype, unless ``use`` fixed one)."""

    def __init__(self) -> None:
        self._library, self._fixed_dtype = current()
        self._backend: Backend | None = None

    def _take(self, a: Any, argument: str = "inputs") -> Any:
        """``a`` as a float array of this object's backend, which follows ``a``'s dtype."""
        a = device_array(a)
        backend = self._backend
        if backend is not None and type(a) is backend.array_type and a.dtype == backend.dtype:
            return a  # the hot loop's case
        backend = self._follow(a)
        return ensure_numbers(backend, a, argument)  # text, complex, objects refused by name

    def _follow(self, a: Any) -> Backend:
        """Set the backend from ``a``'s float dtype (float32 for anything else)."""
        dtype = self._fixed_dtype
        if dtype is None:
            home = self._backend or backend_for(self._library, "float32")
            dtype = float_name(a, home) or (self._backend.dtype_name if self._backend else None)
            dtype = dtype or "float32"
        backend = self._backend
        if backend is None or backend.dtype_name != dtype:
            backend = backend_for(self._library, dtype)
            self._bind(backend)
        return backend

    def _bind(self, backend: Backend) -> None:
        """Compute on ``backend`` from now on (parts with xpnn objects inside move them too)."""
        self._backend = backend

    def _show(self, a: Any) -> Any:
        """``a`` as the script sees it: itself on NumPy, an :class:`OnDevice` elsewhere."""
        if a is None or self._backend.on_host:
            return a
        return OnDevice(a, self._backend)


def _host(value: Any) -> Any:
    """``value`` with every :class:`OnDevice` (also inside lists and tuples) brought to NumPy."""
    if type(value) is OnDevice:
        return value.get()
    if isinstance(value, (list, tuple)):
        return type(value)(_host(v) for v in value)
    return value


class OnDevice:
    """An array on the device that reads as a NumPy array.

    NumPy functions, ufuncs, indexing, printing and formatting see its values on the host (one
    transfer each). Arithmetic with Python numbers or another ``OnDevice`` stays on the device,
    so ``epoch_loss += loss`` does not wait for it; anything else computes on the host.
    """

    __slots__ = ("array", "backend")

    def __init__(self, array: Any, backend: Backend) -> None:
        self.array = array
        self.backend = backend

    def get(self) -> np.ndarray:
        """The values as a NumPy array on the host."""
        return to_numpy(self.array)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        host = self.get()
        return host if dtype is None else host.astype(dtype)

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        return getattr(ufunc, method)(*_host(inputs), **{k: _host(v) for k, v in kwargs.items()})

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        return func(*_host(args), **{k: _host(v) for k, v in kwargs.items()})

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape, read without a transfer."""
        return tuple(self.array.shape)

    @property
    def ndim(self) -> int:
        """The number of dimensions, read without a transfer."""
        return self.array.ndim

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> Any:
        return self.get()[_host(key)]

    def __iter__(self) -> Any:
        return iter(self.get())

    def __getattr__(self, name: str) -> Any:  # dtype, T, copy(), reshape(), tolist(), ...
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.get(), name)

    def __format__(self, spec: str) -> str:
        host = self.get()
        return format(host[()] if host.ndim == 0 else host, spec)

    def __str__(self) -> str:
        return str(self.get())

    def __repr__(self) -> str:
        return repr(self.get())

    def __float__(self) -> float:
        return float(self.get())

    def __int__(self) -> int:
        return int(self.get())

    def __bool__(self) -> bool:
        return bool(self.get())

    def __neg__(self) -> OnDevice:
        return OnDevice(-self.array, self.backend)

    def __abs__(self) -> OnDevice:
        return OnDevice(self.backend.xp.abs(self.array), self.backend)


def _binary(op: Any, reflected: bool) -> Any:
    def method(self: OnDevice, other: Any) -> Any:
        if type(other) is OnDevice and other.backend is self.backend:
            other_value, on_device = other.array, True
        else:
            other_value = other
            on_device = type(other) in (int, float, bool)
        if on_device:
            a, b = (other_value, self.array) if reflected else (self.array, other_value)
            try:
                return OnDevice(op(a, b), self.backend)
            except TypeError:  # what the array API refuses (bool * 1): NumPy's rules, on the host
                pass
        host = self.get()
        other_value = _host(other)
        return op(other_value, host) if reflected else op(host, other_value)

    return method


for _name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow"):
    _op = getattr(operator, _name)
    setattr(OnDevice, f"__{_name}__", _binary(_op, False))
    setattr(OnDevice, f"__r{_name}__", _binary(_op, True))
for _name in ("lt", "le", "gt", "ge", "eq", "ne"):
    setattr(OnDevice, f"__{_name}__", _binary(getattr(operator, _name), False))
OnDevice.__hash__ = None  # type: ignore[assignment]

_from_environment()
