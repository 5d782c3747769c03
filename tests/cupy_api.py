"""A CuPy API stand-in: xpnn's cupy path checked against the installed CuPy, computed by NumPy.

Without a GPU, CuPy imports but cannot run anything, so a CuPy-only mistake (a keyword CuPy lacks,
a method its arrays lack, implicit conversion to NumPy, a NumPy array mixed into a CuPy operation)
goes unseen off a GPU. ``install()`` puts a fake ``cupy`` module into ``sys.modules`` that plays a
working GPU: every function, method and attribute xpnn uses must exist on the real CuPy, every
call must bind to the real CuPy signature, NumPy arrays are refused where CuPy refuses them, and
the arithmetic is done by NumPy. ``ElementwiseKernel`` bodies are evaluated statement by
statement over whole arrays.

It is a check of the API, not of the numbers a GPU gives: reductions, random streams and
subnormal handling on a real device may differ from NumPy's.
"""

from __future__ import annotations

import ast
import collections
import functools
import importlib
import inspect
import re
import sys
import threading
import types
import warnings
from typing import Any

import nccl_standin
import numpy as np

#: Calls checked, by name ("clip", "ndarray.__add__", "random.Generator.random", ...).
counts: collections.Counter[str] = collections.Counter()
#: The calls that wait for the device and bring data to the host (a synchronisation on a GPU):
#: conversions, printing, copies to the host, and results whose shape depends on the data.
SYNCS = frozenset(
    [f"ndarray.__{name}__" for name in ("bool", "float", "int", "complex", "index", "repr")]
    + ["ndarray.__str__", "ndarray.__format__", "ndarray.__getitem__[mask]", "ndarray.get"]
    + ["ndarray.item", "ndarray.tolist", "ndarray.nonzero", "asnumpy", "nonzero"]
    + ["flatnonzero", "argwhere", "unique", "cuda.Stream.synchronize", "cuda.Device.synchronize"]
)


def syncs() -> int:
    """How many synchronising calls (``SYNCS``) the stand-in has seen."""
    return sum(counts[name] for name in SYNCS)


#: Names whose real signature could not be read: for those only the name's existence is checked.
unreadable: set[str] = set()

_real: types.ModuleType | None = None  # the real cupy module: the reference for every check
_standin: types.ModuleType | None = None

#: Host data that CuPy's array constructors accept; everything else refuses NumPy arrays.
_TAKES_HOST = {"array", "asarray", "asanyarray", "asnumpy", "get_array_module"}
#: CuPy names (NumPy 1's) whose NumPy 2 function has another name; a missing one says so.
_NUMPY_NAMES = {
    "alltrue": "all",
    "sometrue": "any",
    "product": "prod",
    "cumproduct": "cumprod",
    "round_": "round",
    "trapz": "trapezoid",
    "in1d": "isin",
}
#: Scalars CuPy's operators and ufuncs accept beside its own arrays.
_SCALARS = (bool, int, float, complex, np.generic)


class StandInGap(NotImplementedError):
    """CuPy has this, but the stand-in cannot compute it with NumPy yet: teach tests/cupy_api.py."""


# -- reading CuPy's signatures --------------------------------------------------------------------

_FIRST_LINE = re.compile(r"^[\w.]+\((.*)\)\s*(->.*)?$")
_DEFAULT = "<default>"  # stands for any default value read from a docstring


def _split_top(text: str) -> list[str]:
    """``text`` split at the commas outside brackets and quotes."""
    parts, depth, quote, start = [], 0, "", 0
    for i, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([{<":
            depth += 1
        elif char in ")]}>":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def _from_docstring(obj: Any) -> inspect.Signature | None:
    """The signature Cython embeds in the first docstring line (``name(a, b=1, *, c=None)``)."""
    doc = getattr(obj, "__doc__", None)
    if not isinstance(doc, str) or not doc.strip():
        return None
    found = _FIRST_LINE.match(doc.strip().splitlines()[0].replace("\\*", "*"))
    if found is None:
        return None
    params: list[inspect.Parameter] = []
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    for part in _split_top(found.group(1)):
        name, equals, _ = part.partition("=")
        name = name.split()[-1] if name.split() else ""  # Cython's "tuple max_version" -> name
        if name == "/":
            params = [p.replace(kind=inspect.Parameter.POSITIONAL_ONLY) for p in params]
        elif name == "*":
            kind = inspect.Parameter.KEYWORD_ONLY
        elif name.startswith("**") and name[2:].isidentifier():
            params.append(inspect.Parameter(name[2:], inspect.Parameter.VAR_KEYWORD))
        elif name.startswith("*") and name[1:].isidentifier():
            params.append(inspect.Parameter(name[1:], inspect.Parameter.VAR_POSITIONAL))
            kind = inspect.Parameter.KEYWORD_ONLY
        elif name.isidentifier():
            default = _DEFAULT if equals else inspect.Parameter.empty
            params.append(inspect.Parameter(name, kind, default=default))
        else:
            return None
    try:
        return inspect.Signature(params)
    except ValueError:
        return None


def signature(qualname: str, obj: Any, *, method: bool = False) -> inspect.Signature | None:
    """The real signature of ``obj`` (from inspect, else its docstring), ``self`` dropped for a
    method; None (and ``qualname`` noted as unreadable) where neither gives one."""
    try:
        found = inspect.signature(obj)
    except (TypeError, ValueError):
        found = _from_docstring(obj)
    if found is None:
        unreadable.add(qualname)
        return None
    if method:
        params = list(found.parameters.values())
        if params and params[0].kind != inspect.Parameter.VAR_POSITIONAL:
            found = found.replace(parameters=params[1:])
    return found


@functools.cache
def _signature_of(qualname: str, obj: Any) -> inspect.Signature | None:
    """``signature``, read once."""
    return signature(qualname, obj)


def _bind(qualname: str, sig: inspect.Signature | None, args: tuple, kwargs: dict) -> None:
    """Count the call and check that it binds to CuPy's signature, as CuPy would."""
    counts[qualname] += 1
    if sig is not None:
        try:
            sig.bind(*args, **kwargs)
        except TypeError as error:
            raise TypeError(f"cupy.{qualname}{sig}: {error} (CuPy would refuse this)") from None


# -- moving between the stand-in and NumPy ---------------------------------------------------------


def _refuse_host(qualname: str, values: Any) -> None:
    """TypeError, as CuPy gives, for a NumPy array where CuPy wants its own array."""
    for value in values:
        if isinstance(value, np.ndarray):
            raise TypeError(
                f"cupy.{qualname}: Unsupported type {type(value)}: a NumPy array where CuPy wants "
                "a cupy.ndarray (CuPy never moves host data implicitly; use cupy.asarray)"
            )
        if isinstance(value, (list, tuple)):
            _refuse_host(qualname, value)
        elif isinstance(value, dict):
            _refuse_host(qualname, value.values())


def _host(value: Any) -> Any:
    """Stand-in arrays (also inside lists and tuples) as the NumPy arrays they hold."""
    if isinstance(value, ndarray):
        return value._a
    if isinstance(value, (list, tuple)):
        return type(value)(_host(v) for v in value)
    return value


def _wrap(result: Any, given: tuple = ()) -> Any:
    """NumPy results as stand-in arrays: a NumPy scalar becomes a 0-d array (CuPy returns arrays
    from reductions and indexing), and an array handed back unchanged (``out=``, ``asarray``)
    is the stand-in array that held it."""
    if isinstance(result, np.ndarray):
        for value in given:
            if isinstance(value, ndarray) and value._a is result:
                return value
        return _new(result)
    if isinstance(result, np.generic):
        return _new(np.asarray(result))
    if isinstance(result, tuple):
        return tuple(_wrap(r, given) for r in result)
    return result


def _new(a: np.ndarray) -> ndarray:
    array = object.__new__(ndarray)
    array._a = a
    array._device = getattr(_current, "id", 0)
    return array


def _wrapped_indices(shape: tuple[int, ...], key: Any) -> Any:
    """``key`` with its integer arrays taken modulo their axis length: CuPy wraps out-of-range
    integer-array indices around where NumPy raises IndexError."""
    items = list(key) if isinstance(key, tuple) else [key]
    items = [np.asarray(i) if isinstance(i, list) else i for i in items]

    def width(item: Any) -> int:
        if item is None or item is Ellipsis:
            return 0
        if isinstance(item, np.ndarray) and item.dtype == np.bool_:
            return item.ndim
        return 1

    explicit = sum(width(i) for i in items)
    axis, out = 0, []
    for item in items:
        if item is Ellipsis:
            axis += len(shape) - explicit
        elif isinstance(item, np.ndarray) and item.dtype.kind in "iu" and axis < len(shape):
            if shape[axis] > 0:
                item = np.mod(item, shape[axis])
        out.append(item)
        axis += width(item)
    return tuple(out) if isinstance(key, tuple) else out[0]


def _has_mask(key: Any) -> bool:
    """True where ``key`` holds a boolean array (a mask, whose count decides the shape)."""
    keys = key if isinstance(key, tuple) else (key,)
    return any(isinstance(k, np.ndarray) and k.dtype == bool for k in keys)


def _has_array(key: Any) -> bool:
    items = key if isinstance(key, tuple) else (key,)
    return any(isinstance(i, (np.ndarray, list)) for i in items)


# -- functions ----------------------------------------------------------------------------------


def _asarray(a, dtype=None, order=None, *, copy=None, blocking=False):
    return _array(a, dtype, copy=copy, order=order or "K")


def _array(obj, dtype=None, copy=True, order="K", subok=False, ndmin=0, *, blocking=False):
    """A copy of host data (it moves to the device); a device array itself where it can be."""
    own = isinstance(obj, ndarray)
    held = _host(obj)
    copy = True if copy or not own else None
    result = np.array(held, dtype=dtype, copy=copy, order=order, ndmin=ndmin)
    return obj if result is held and own else _new(result)


def _asnumpy(a, stream=None, order="C", out=None, *, blocking=True):
    result = np.array(_host(a), order=order)
    if out is None:
        return result
    out[...] = result
    return out


def _astype(x, dtype, /, *, copy=True):
    return _wrap(_host(x).astype(dtype, copy=copy), (x,))  # np.astype is NumPy 2.1's


def _take(a, indices, axis=None, out=None):
    result = np.take(_host(a), _host(indices), axis=axis, out=_host(out), mode="wrap")
    return _wrap(result, (a, out))


def _take_along_axis(a, indices, axis):
    held = _host(a)
    size = held.shape[axis] if axis is not None else held.size
    return _new(np.take_along_axis(held, np.mod(_host(indices), max(size, 1)), axis=axis))


#: Functions computed by hand where NumPy's function of the same name would not do.
_FUNCTIONS = {
    "asarray": _asarray,
    "asanyarray": _asarray,
    "array": _array,
    "asnumpy": _asnumpy,
    "astype": _astype,
    "take": _take,
    "take_along_axis": _take_along_axis,
}


def _checked_function(qualname: str, real: Any, numpy_module: Any) -> Any:
    """``real`` checked on every call, computed by NumPy's function of the same name."""
    name = qualname.rpartition(".")[2]
    sig = signature(qualname, real)
    own = _FUNCTIONS.get(qualname)
    numpy_function = getattr(numpy_module, _NUMPY_NAMES.get(name, name), None)
    is_ufunc = isinstance(real, _real.ufunc)
    takes_host = qualname in _TAKES_HOST

    def call(*args: Any, **kwargs: Any) -> Any:
        _bind(qualname, sig, args, kwargs)
        if not takes_host:
            _refuse_host(qualname, args)
            _refuse_host(qualname, kwargs.values())
        if is_ufunc:  # CuPy's ufuncs take arrays and scalars, not lists
            for value in args:
                if value is not None and not isinstance(value, (ndarray, *_SCALARS)):
                    raise TypeError(f"cupy.{qualname}: Unsupported type {type(value)}")
        if own is not None:
            return own(*args, **kwargs)
        if numpy_function is None:
            raise StandInGap(f"cupy.{qualname} has no NumPy function of the same name")
        return _wrap(
            numpy_function(*_host(args), **_host_kwargs(kwargs)), (*args, *kwargs.values())
        )

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"cupy.{qualname}, checked against CuPy and computed by NumPy."
    return call


def _host_kwargs(kwargs: dict) -> dict:
    return {key: _host(value) for key, value in kwargs.items()}


# -- the array ------------------------------------------------------------------------------------


class ndarray:
    """Stands in for ``cupy.ndarray``: holds a NumPy array, offers only what CuPy's arrays offer.

    Its methods, properties and operators are made below from the real class's list, so an
    attribute CuPy's arrays lack (``__array_namespace__``, ``to_device``, ``__index__``) is an
    AttributeError here too.
    """

    __module__ = "cupy"
    __slots__ = ("_a", "_device")
    _a: np.ndarray
    _device: int  # the device current when it was made, as CuPy's arrays keep theirs

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        counts["ndarray"] += 1
        if memptr is not None or strides is not None:
            raise StandInGap("cupy.ndarray(memptr=..., strides=...) is not modelled")
        self._a = np.empty(shape, dtype=dtype, order=order)
        self._device = getattr(_current, "id", 0)

    def __array__(self, dtype=None, copy=None):
        raise TypeError(
            "Implicit conversion to a NumPy array is not allowed. Please use `.get()` to "
            "construct a NumPy array explicitly."
        )

    def __repr__(self) -> str:
        counts["ndarray.__repr__"] += 1
        return repr(self._a)

    def __str__(self) -> str:
        counts["ndarray.__str__"] += 1
        return str(self._a)

    def __format__(self, spec: str) -> str:
        counts["ndarray.__format__"] += 1
        return format(self._a, spec)

    def __len__(self) -> int:
        return len(self._a)

    def __iter__(self):
        if self._a.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (_new(np.asarray(self._a[i])) for i in range(len(self._a)))

    def __bool__(self) -> bool:
        counts["ndarray.__bool__"] += 1
        return bool(self._a)

    def __float__(self) -> float:
        counts["ndarray.__float__"] += 1
        return float(self._a)

    def __int__(self) -> int:
        counts["ndarray.__int__"] += 1
        return int(self._a)

    def __complex__(self) -> complex:
        counts["ndarray.__complex__"] += 1
        return complex(self._a)

    def __copy__(self) -> ndarray:
        return _new(self._a.copy())

    def __deepcopy__(self, memo: dict) -> ndarray:
        return _new(self._a.copy())

    def __reduce__(self):
        return _new, (self._a.copy(),)

    def __pos__(self) -> ndarray:
        counts["ndarray.__pos__"] += 1
        return self

    def __getitem__(self, key: Any) -> ndarray:
        counts["ndarray.__getitem__"] += 1
        key = _host(key)
        if _has_mask(key):
            counts["ndarray.__getitem__[mask]"] += 1  # the result's size is read from the device
        if _has_array(key):
            key = _wrapped_indices(self._a.shape, key)
        return _wrap(self._a[key])

    def __setitem__(self, key: Any, value: Any) -> None:
        counts["ndarray.__setitem__"] += 1
        key = _host(key)
        if isinstance(value, np.ndarray) and value.ndim > 0 and not _has_array(key):
            # Basic indexing fills from a scalar; only a whole-array copy takes host data.
            if not (isinstance(key, slice) and key == slice(None)):
                raise ValueError("non-scalar numpy.ndarray cannot be used for fill")
            if value.shape != self._a.shape or value.dtype != self._a.dtype:
                raise ValueError(
                    "copying a numpy.ndarray to a cupy.ndarray by empty slice assignment must "
                    "ensure arrays have same shape and dtype"
                )
        if _has_array(key):
            key = _wrapped_indices(self._a.shape, key)
        self._a[key] = _host(value)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        """NumPy's ufunc on a CuPy array runs CuPy's ufunc of the same name, as CuPy does."""
        if method != "__call__" or not hasattr(_real, ufunc.__name__):
            return NotImplemented
        if "out" in kwargs:
            if len(kwargs["out"]) != 1:
                raise ValueError("The 'out' parameter must have exactly one array value")
            kwargs["out"] = kwargs["out"][0]
        for value in (*inputs, kwargs.get("out")):
            if value is not None and not isinstance(value, (ndarray, np.ndarray, *_SCALARS)):
                return NotImplemented
        return getattr(_standin, ufunc.__name__)(*inputs, **kwargs)

    def __array_function__(self, func, types, args, kwargs):
        """NumPy's function on a CuPy array runs CuPy's function of the same name, as CuPy does."""
        path = [*func.__module__.split(".")[1:], func.__name__]
        try:
            real = functools.reduce(getattr, path, _real)
        except AttributeError:
            return NotImplemented
        if real is func or any(t not in (ndarray, np.ndarray) for t in types):
            return NotImplemented
        return functools.reduce(getattr, path, _standin)(*args, **kwargs)


ndarray.__qualname__ = "ndarray"


def _operand(qualname: str, other: Any) -> Any:
    """``other`` for NumPy, or TypeError for what CuPy's operators refuse."""
    if isinstance(other, ndarray):
        return other._a
    if isinstance(other, np.ndarray):
        raise TypeError(
            f"cupy.{qualname}: Unsupported type {type(other)}: a NumPy array mixed into a CuPy "
            "operation (CuPy never moves host data implicitly; use cupy.asarray)"
        )
    if isinstance(other, _SCALARS):
        return other
    raise TypeError(f"cupy.{qualname}: Unsupported type {type(other)}")


def _binary(name: str, function: Any, *, reflected: bool = False, inplace: bool = False):
    qualname = f"ndarray.{name}"

    def operator(self, other):
        counts[qualname] += 1
        if getattr(other, "__array_ufunc__", False) is None:
            return NotImplemented  # the other operand opted out of ufuncs: let it answer
        value = _operand(qualname, other)
        if inplace:
            function(self._a, value, out=self._a)
            return self
        return _wrap(function(value, self._a) if reflected else function(self._a, value))

    operator.__name__ = operator.__qualname__ = name
    return operator


def _unary(name: str, function: Any):
    qualname = f"ndarray.{name}"

    def operator(self):
        counts[qualname] += 1
        return _wrap(function(self._a))

    operator.__name__ = operator.__qualname__ = name
    return operator


_BINARY = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "truediv": np.true_divide,
    "floordiv": np.floor_divide,
    "mod": np.remainder,
    "pow": np.power,
    "matmul": np.matmul,
    "and": np.bitwise_and,
    "or": np.bitwise_or,
    "xor": np.bitwise_xor,
    "lshift": np.left_shift,
    "rshift": np.right_shift,
}
_COMPARISONS = {
    "lt": np.less,
    "le": np.less_equal,
    "eq": np.equal,
    "ne": np.not_equal,
    "gt": np.greater,
    "ge": np.greater_equal,
}
_UNARY = {"neg": np.negative, "abs": np.absolute, "invert": np.invert}

#: Methods computed by hand where NumPy's method of the same name would not do.
_METHODS = {
    "take": lambda a, indices, axis=None, out=None: _take(a, indices, axis, out),
    "clip": lambda a, a_min=None, a_max=None, out=None: _wrap(
        np.clip(a._a, _host(a_min), _host(a_max), out=_host(out)), (a, out)
    ),
    "argmax": lambda a, axis=None, out=None, dtype=None, keepdims=False: _wrap(
        np.argmax(a._a, axis=axis, out=_host(out), keepdims=keepdims), (out,)
    ),
    "argmin": lambda a, axis=None, out=None, dtype=None, keepdims=False: _wrap(
        np.argmin(a._a, axis=axis, out=_host(out), keepdims=keepdims), (out,)
    ),
}


def _get(a: ndarray, stream: Any = None, order: str = "C", out: Any = None, blocking=True):
    if out is None:
        return np.array(a._a, order=order)
    if not isinstance(out, np.ndarray):
        raise TypeError("Only numpy.ndarray can be obtained from cupy.ndarray")
    if out.dtype != a._a.dtype or out.shape != a._a.shape:
        raise TypeError(
            f"{out.dtype}{out.shape} array cannot be obtained from {a._a.dtype}{a._a.shape} array"
        )
    out[...] = a._a
    return out


def _astype_method(a: ndarray, dtype: Any, order="K", casting=None, subok=None, copy=True):
    if casting is not None or subok is not None:
        raise TypeError("casting and subok are not supported yet (cupy.ndarray.astype)")
    return _wrap(a._a.astype(dtype, order=order or "K", copy=copy), (a,))


def _set(a: ndarray, arr: Any, stream: Any = None) -> None:
    if not isinstance(arr, np.ndarray):
        raise TypeError("Only numpy.ndarray can be set to cupy.ndarray")
    if arr.dtype != a._a.dtype:
        raise TypeError(f"{arr.dtype} array cannot be set to {a._a.dtype} array")
    if arr.shape != a._a.shape:
        raise ValueError(f"Shape mismatch. Old shape: {a._a.shape}, new shape: {arr.shape}")
    a._a[...] = arr


_METHODS["astype"] = _astype_method
_METHODS["get"] = _get
_METHODS["set"] = _set
#: Methods whose arguments are host data by design.
_METHODS_TAKING_HOST = {"get", "set"}


def _method(name: str, real: Any):
    qualname = f"ndarray.{name}"
    sig = signature(qualname, real, method=True)
    own = _METHODS.get(name)
    takes_host = name in _METHODS_TAKING_HOST

    def method(self, *args, **kwargs):
        _bind(qualname, sig, args, kwargs)
        if not takes_host:
            _refuse_host(qualname, args)
            _refuse_host(qualname, kwargs.values())
        if own is not None:
            return own(self, *args, **kwargs)
        numpy_method = getattr(self._a, name, None)
        if numpy_method is None:
            raise StandInGap(f"cupy.ndarray.{name} has no NumPy method of the same name")
        result = numpy_method(*_host(args), **_host_kwargs(kwargs))
        return _wrap(result, (self, *args, *kwargs.values()))

    method.__name__ = method.__qualname__ = name
    return method


def _property(name: str):
    if name == "device":
        return property(
            lambda self: Device(self._device), doc="The device current when it was made."
        )
    if name == "__cuda_array_interface__":
        return property(
            lambda self: {
                "shape": self._a.shape,
                "typestr": self._a.dtype.str,
                "descr": self._a.dtype.descr,
                "data": (self._a.ctypes.data, False),
                "strides": None if self._a.flags.c_contiguous else self._a.strides,
                "version": 3,
            }
        )
    if name == "data":
        return property(lambda self: _MemoryPointer(self._a), doc="Where the data start.")
    if name in ("cstruct", "flat") or not hasattr(np.ndarray, name):

        def gap(self):
            raise StandInGap(f"cupy.ndarray.{name} is not modelled")

        return property(gap)

    def get(self):
        if name == "T" and self._a.ndim < 2:
            return self  # as CuPy's
        return _wrap(getattr(self._a, name), (self,))

    if name == "shape":

        def set_shape(self, shape):
            self._a.shape = shape

        return property(get, set_shape)
    return property(get)


def _build_array_class(real_ndarray: type) -> None:
    """Give the stand-in array exactly the real class's operators, methods and properties."""
    has = set(dir(real_ndarray))
    for name in list(vars(ndarray)):
        if name.startswith("__") and name not in has and name not in _KEEP:
            delattr(ndarray, name)  # a protocol CuPy's arrays lack
    for short, function in _BINARY.items():
        for dunder, flags in (
            (f"__{short}__", {}),
            (f"__r{short}__", {"reflected": True}),
            (f"__i{short}__", {"inplace": True}),
        ):
            if dunder in has:
                setattr(ndarray, dunder, _binary(dunder, function, **flags))
    for short, function in _COMPARISONS.items():
        if f"__{short}__" in has:
            setattr(ndarray, f"__{short}__", _binary(f"__{short}__", function))
    for short, function in _UNARY.items():
        if f"__{short}__" in has:
            setattr(ndarray, f"__{short}__", _unary(f"__{short}__", function))
    for name in sorted(has):
        if name.startswith("_"):
            continue
        raw = inspect.getattr_static(real_ndarray, name)
        if isinstance(raw, (types.GetSetDescriptorType, types.MemberDescriptorType, property)):
            setattr(ndarray, name, _property(name))
        elif callable(raw):
            setattr(ndarray, name, _method(name, getattr(real_ndarray, name)))
    ndarray.__cuda_array_interface__ = _property("__cuda_array_interface__")
    ndarray.__hash__ = None  # unhashable, as CuPy's arrays


#: Special names of the class kept whatever the real class lists (Python's own machinery).
_KEEP = {
    "__module__",
    "__slots__",
    "__qualname__",
    "__doc__",
    "__init__",
    "__annotations__",
    "__firstlineno__",
    "__static_attributes__",
}


# -- the device, streams, random numbers, kernels -----------------------------------------------


#: How many devices the stand-in plays (tests set it); each thread has its own current one.
DEVICE_COUNT = 1
_current = threading.local()


class Device:
    """Stands in for ``cupy.cuda.Device``: ``DEVICE_COUNT`` devices, the current one kept per
    thread as CUDA keeps it; usable as a context."""

    __module__ = "cupy.cuda.device"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _bind("cuda.Device", _signature_of("cuda.Device", _real.cuda.Device), args, kwargs)
        device = (*args, *kwargs.values(), None)[0]
        self.id = getattr(_current, "id", 0) if device is None else int(device)

    def __repr__(self) -> str:
        return f"<CUDA Device {self.id}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self) -> int:
        return hash(("cuda", self.id))

    def __enter__(self) -> Device:
        self._previous = getattr(_current, "id", 0)
        self.use()
        return self

    def __exit__(self, *exc: Any) -> None:
        _current.id = self._previous

    def use(self) -> None:
        """Make it this thread's current device; an id past ``DEVICE_COUNT`` fails, as CUDA's
        ``cudaSetDevice``."""
        counts["cuda.Device.use"] += 1
        if not 0 <= self.id < DEVICE_COUNT:
            raise _real.cuda.runtime.CUDARuntimeError(101)  # cudaErrorInvalidDevice
        _current.id = self.id

    def synchronize(self) -> None:
        """Wait for the device (NumPy has already finished)."""
        counts["cuda.Device.synchronize"] += 1


def _device_count() -> int:
    counts["cuda.runtime.getDeviceCount"] += 1
    return DEVICE_COUNT


class _MemoryPointer:
    """Stands in for ``cupy.cuda.MemoryPointer``: ``ptr``, the data's address, by which the
    stand-in NCCL finds the array again."""

    def __init__(self, a: np.ndarray) -> None:
        self.ptr = a.ctypes.data
        _by_pointer[self.ptr] = a


#: The arrays whose ``.data.ptr`` was taken, by address (the stand-in NCCL's device memory).
_by_pointer: dict[int, np.ndarray] = {}


class _Stream:
    """Stands in for a ``cupy.cuda.Stream``: NumPy's work is done when the call returns."""

    ptr = 0  # the null stream's handle, as CuPy's default stream has

    def synchronize(self) -> None:
        counts["cuda.Stream.synchronize"] += 1

    def __getattr__(self, name: str) -> Any:
        if not hasattr(_real.cuda.Stream, name):
            raise AttributeError(f"'cupy.cuda.Stream' object has no attribute {name!r}")
        raise StandInGap(f"cupy.cuda.Stream.{name} is not modelled")


class Generator:
    """Stands in for ``cupy.random.Generator``: CuPy's methods, drawn by a NumPy Generator.

    The numbers differ from CuPy's (another bit generator); their shapes and dtypes do not.
    """

    __module__ = "cupy.random._generator_api"

    def __init__(self, generator: np.random.Generator) -> None:
        self._generator = generator

    def __getattr__(self, name: str) -> Any:
        real = getattr(_real.random.Generator, name)  # AttributeError as CuPy's
        qualname = f"random.Generator.{name}"
        sig = signature(qualname, real, method=True)
        numpy_method = getattr(self._generator, name, None)

        def method(*args: Any, **kwargs: Any) -> Any:
            _bind(qualname, sig, args, kwargs)
            _refuse_host(qualname, (*args, *kwargs.values()))
            if numpy_method is None:
                raise StandInGap(f"cupy.{qualname} has no NumPy method of the same name")
            return _wrap(numpy_method(*_host(args), **_host_kwargs(kwargs)), tuple(kwargs.values()))

        return method


_C_FUNCTIONS = {"sqrt": np.sqrt, "exp": np.exp, "log": np.log, "fabs": np.abs, "abs": np.abs}
_C_NODES = (
    ast.Expression,
    ast.BinOp,
    ast.UnaryOp,
    ast.Add,
    ast.Sub,
    ast.Mult,
    ast.Div,
    ast.USub,
    ast.UAdd,
    ast.Name,
    ast.Load,
    ast.Constant,
    ast.Call,
)
_STATEMENT = re.compile(r"^(\w+)\s*([-+*/]?=)\s*(.+)$", re.S)


class _FloatLiterals(ast.NodeTransformer):
    """C's ``2.0`` is a double: as np.float64 it promotes float32 arithmetic as in C."""

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        if isinstance(node.value, float):
            return ast.copy_location(ast.Call(ast.Name("_double", ast.Load()), [node], []), node)
        return node


def _parse_params(text: str) -> list[tuple[str, str]]:
    """``"T grad, float32 x"`` as [("T", "grad"), ("float32", "x")]; ``raw`` is not modelled."""
    params = []
    for part in _split_top(text):
        words = part.split()
        if len(words) != 2:
            raise StandInGap(f"ElementwiseKernel parameter {part!r} is not modelled")
        params.append((words[0], words[1]))
    return params


class ElementwiseKernel:
    """Stands in for ``cupy.ElementwiseKernel``: the C body run by NumPy over whole arrays.

    Each statement (``x = expr;`` or ``x op= expr;``, arithmetic and ``sqrt``-like calls) runs
    in order over the whole arrays, scalars cast to their parameter's type, so every element
    sees the same operations as in the kernel; the outputs are then written back in place.
    """

    __module__ = "cupy._core._kernel"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _bind("ElementwiseKernel", _KERNEL_SIGNATURE, args, kwargs)
        given = _KERNEL_SIGNATURE.bind(*args, **kwargs).arguments
        extra = given.get("kwargs", {})
        unknown = set(extra) - {"options", "loop_prep", "after_loop"}
        if unknown:
            raise TypeError(f"cupy.ElementwiseKernel: unexpected keyword arguments {unknown}")
        if extra.get("loop_prep") or extra.get("after_loop") or given.get("preamble"):
            raise StandInGap("ElementwiseKernel preamble/loop_prep/after_loop are not modelled")
        options = extra.get("options", ())
        if not isinstance(options, tuple) or not all(isinstance(o, str) for o in options):
            raise TypeError(f"cupy.ElementwiseKernel: options must be a tuple of str: {options!r}")
        self.name = given.get("name", "kernel")
        self.no_return = bool(given.get("no_return", False))
        self.inputs = _parse_params(given["in_params"])
        self.outputs = _parse_params(given["out_params"])
        self.statements = [self._compile(s) for s in given["operation"].split(";") if s.strip()]

    def _compile(self, statement: str) -> Any:
        found = _STATEMENT.match(statement.strip())
        if found is None:
            raise StandInGap(f"ElementwiseKernel statement {statement.strip()!r} is not modelled")
        target, operator, expression = found.groups()
        if target not in {name for _, name in self.outputs}:
            raise StandInGap(f"ElementwiseKernel: {target!r} is not an output parameter")
        tree = ast.parse(" ".join(expression.split()), mode="eval")
        known = {name for _, name in self.inputs + self.outputs} | set(_C_FUNCTIONS)
        for node in ast.walk(tree):
            if not isinstance(node, _C_NODES) or (
                isinstance(node, ast.Name) and node.id not in known | {"_double"}
            ):
                raise StandInGap(f"ElementwiseKernel expression {expression!r} is not modelled")
        tree = ast.fix_missing_locations(_FloatLiterals().visit(tree))
        code = compile(tree, f"<kernel {self.name}>", "eval")
        return target, operator, code

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        qualname = f"ElementwiseKernel {self.name}"
        counts[qualname] += 1
        if set(kwargs) - {"size", "block_size"}:
            raise TypeError(f"cupy.{qualname}: unexpected keyword arguments {set(kwargs)}")
        n_in, n_out = len(self.inputs), len(self.outputs)
        if len(args) not in (n_in, n_in + n_out):
            raise TypeError(f"Wrong number of arguments for {self.name!r}")
        _refuse_host(qualname, args)
        for value in args:
            if not isinstance(value, (ndarray, *_SCALARS)):
                raise TypeError(f"cupy.{qualname}: Unsupported type {type(value)}")
        params = self.inputs + self.outputs[: len(args) - n_in]
        types_of = self._resolve_types(qualname, params, args)
        arrays = [v._a for v in args if isinstance(v, ndarray)]
        shape = np.broadcast_shapes(*(a.shape for a in arrays)) if arrays else ()
        outputs = list(args[n_in:])
        for kind, _ in self.outputs[len(outputs) :]:
            outputs.append(_new(np.empty(shape, dtype=types_of[kind])))
        for out in outputs:
            if out._a.shape != shape:
                raise ValueError(f"Out shape is mismatched: {out._a.shape} for {shape}")
        env: dict[str, Any] = {"_double": np.float64, **_C_FUNCTIONS}
        for (kind, name), value in zip(self.inputs, args):
            env[name] = value._a if isinstance(value, ndarray) else types_of[kind].type(value)
        for (_, name), out in zip(self.outputs, outputs):
            env[name] = out._a.copy()
        for target, operator, code in self.statements:
            value = eval(code, {"__builtins__": {}}, env)
            if operator == "=":
                env[target] = value
            else:
                env[target] = _C_OPERATORS[operator](env[target], value)
        for (_, name), out in zip(self.outputs, outputs):
            out._a[...] = env[name]
        if self.no_return:
            return None
        return outputs[0] if len(outputs) == 1 else tuple(outputs)

    def _resolve_types(self, qualname: str, params: list, args: tuple) -> dict[str, np.dtype]:
        """Each parameter type as a dtype: a type placeholder (``T``) takes its arrays' dtype,
        which must agree, as CuPy requires."""
        found: dict[str, np.dtype] = {}
        for (kind, name), value in zip(params, args):
            if not isinstance(value, ndarray):
                continue
            if _is_placeholder(kind):
                if found.setdefault(kind, value._a.dtype) != value._a.dtype:
                    raise TypeError(
                        f"cupy.{qualname}: Type is mismatched. {name} is {value._a.dtype} but "
                        f"{kind} is {found[kind]}"
                    )
        for (kind, _), value in zip(params, args):
            if kind not in found:
                found[kind] = (
                    np.result_type(value) if _is_placeholder(kind) else np.dtype(_C_TYPES[kind])
                )
        for kind, _ in self.outputs:
            found.setdefault(kind, np.dtype(np.float64))
        return found


_C_OPERATORS = {"+=": np.add, "-=": np.subtract, "*=": np.multiply, "/=": np.divide}
_C_TYPES = {"float": "float32", "double": "float64", "int": "int32", "bool": "bool"}
_C_TYPES.update((n, n) for n in ("float16", "float32", "float64", "complex64", "complex128"))
_C_TYPES.update((f"{s}int{b}",) * 2 for s in ("", "u") for b in (8, 16, 32, 64))


def _is_placeholder(kind: str) -> bool:
    """True for a type placeholder such as ``T``, which takes the dtype of its arrays."""
    return kind not in _C_TYPES


# -- the module ----------------------------------------------------------------------------------


class _Namespace(types.ModuleType):
    """A CuPy module (cupy, cupy.random, cupy.cuda, ...): what the real one has, checked.

    Names are resolved on first use: NumPy's own objects that CuPy re-exports (dtypes,
    ``finfo``, ``isdtype``) pass through; functions are checked and computed by NumPy; a name
    the real module lacks is an AttributeError.
    """

    def __init__(self, real: types.ModuleType, numpy_module: Any, prefix: str, own: dict) -> None:
        super().__init__(real.__name__)
        self._real, self._numpy, self._prefix, self._own = real, numpy_module, prefix, own

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        real = getattr(self._real, name)  # a name CuPy lacks: AttributeError, as CuPy gives
        qualname = self._prefix + name
        if name.startswith("_"):
            value = real  # CuPy's internals, for cupyx (imported by others, e.g. hypothesis)
        elif name in self._own:
            value = self._own[name]
            if callable(value) and not isinstance(value, type):
                value = _checked_own(qualname, real, value)
        elif self._numpy is not None and getattr(self._numpy, name, None) is real:
            value = real  # NumPy's own object, re-exported by CuPy
        elif isinstance(real, types.ModuleType):
            value = _Namespace(real, getattr(self._numpy, name, None), qualname + ".", {})
        elif isinstance(real, type) and issubclass(real, BaseException):
            value = real
        elif isinstance(real, type) or not callable(real):
            value = real if not isinstance(real, type) else _gap_class(qualname)
        else:
            value = _checked_function(qualname, real, self._numpy)
        setattr(self, name, value)  # resolved once
        return value


def _checked_own(qualname: str, real: Any, implementation: Any) -> Any:
    """The stand-in's own ``implementation`` of ``qualname``, checked against ``real``."""
    sig = signature(qualname, real)

    def call(*args: Any, **kwargs: Any) -> Any:
        _bind(qualname, sig, args, kwargs)
        return implementation(*args, **kwargs)

    call.__name__ = call.__qualname__ = qualname.rpartition(".")[2]
    return call


def _gap_class(qualname: str) -> Any:
    def gap(*args: Any, **kwargs: Any) -> Any:
        raise StandInGap(f"cupy.{qualname} is not modelled")

    return gap


_KERNEL_SIGNATURE: inspect.Signature


def install() -> types.ModuleType:
    """Put the stand-in in the place of cupy (``sys.modules``), so xpnn imports it."""
    sys.modules["cupy"] = build()
    return sys.modules["cupy"]


def build() -> types.ModuleType:
    """The stand-in, made once: imports the real CuPy (ImportError without it) as its reference.

    It does not install itself: the tests of the stand-in use it where real CuPy runs too.
    """
    global _real, _standin, _KERNEL_SIGNATURE
    if _standin is not None:
        return _standin
    real = importlib.import_module("cupy")
    if isinstance(real, _Namespace):
        raise RuntimeError("cupy is the stand-in already, with no real CuPy to check against")
    _real = real
    with warnings.catch_warnings():  # CuPy warns where the NCCL library is missing
        warnings.simplefilter("ignore")
        importlib.import_module("cupy.cuda.nccl")  # the reference for the stand-in's names
    _build_array_class(_real.ndarray)
    kernel_signature = signature("ElementwiseKernel", _real.ElementwiseKernel)
    if kernel_signature is None:
        raise RuntimeError("cupy.ElementwiseKernel's signature cannot be read")
    _KERNEL_SIGNATURE = kernel_signature
    runtime = _Namespace(
        _real.cuda.runtime, None, "cuda.runtime.", {"getDeviceCount": _device_count}
    )
    cuda = _Namespace(
        _real.cuda,
        None,
        "cuda.",
        {
            "is_available": lambda: True,  # the stand-in plays a working GPU
            "Device": Device,
            "get_current_stream": lambda device_id=-1: _Stream(),
            "runtime": runtime,
            "nccl": nccl_standin.build(_real, _by_pointer, lambda: Device().id),
        },
    )
    random = _Namespace(
        _real.random,
        np.random,
        "random.",
        {
            "default_rng": lambda seed=None: Generator(np.random.default_rng(seed)),
            "Generator": Generator,
        },
    )
    _standin = _Namespace(
        _real,
        np,
        "",
        {
            "ndarray": ndarray,
            "ElementwiseKernel": ElementwiseKernel,
            "cuda": cuda,
            "random": random,
        },
    )
    _standin.__version__ = _real.__version__
    _standin.__doc__ = __doc__
    return _standin


def summary() -> str:
    """One line: how many calls were checked, to how many names, against which CuPy."""
    version = _real.__version__ if _real is not None else "?"
    called = set(counts)
    without = len(called & unreadable)
    return (
        f"cupy-api stand-in: {sum(counts.values()):,} calls to {len(called)} CuPy functions and "
        f"methods checked against CuPy {version} ({without} without a readable signature)"
    )
