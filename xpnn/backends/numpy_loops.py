"""NumPy's own ``exp``, ``tanh`` and ``log``, called from numba-compiled code.

numba's ``exp``, ``tanh`` and ``log`` round differently from NumPy's vectorised ones, so the
compiled epoch calls NumPy's: the inner loop that NumPy's ufunc runs for a float32 or float64
array, read from the ufunc's public C structure (``PyUFuncObject``: its ``functions``,
``data`` and ``types``, in NumPy's C API), is made known to numba's linker under a name of its
own (``xpnn_numpy_exp_float32``...), as ``numpy_blas`` does for NumPy's BLAS. Calling it
costs what a C call does, where calling NumPy back in numba's object mode took some
microseconds a call (a third of the compiled step of a small model).

The loop is taken only where the structure reads as NumPy's C API lays it out, the loop
needs no data of its own, and it gives the ufunc's own results, bit for bit, on a probe of
values each side of every range the function treats apart (checked once, on import); where
any of that fails, the name leads instead to a callback that calls the ufunc from Python
(taking the GIL back): slower, the same numbers. ``loops`` says which each name runs.

What the ufunc does around its loop is not done: NumPy's floating-point error checks
(``np.errstate``, its warnings) are left out, as the rest of the compiled code leaves them out.
Only imported where numba is.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any

import llvmlite.binding
import numba
import numba.extending
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils

__all__ = ["exp", "log", "loops", "tanh"]

#: The signature of a NumPy inner loop: ``(char **args, npy_intp const *dimensions,
#: npy_intp const *steps, void *data)``.
_LOOP = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)
_UFUNCS = {"exp": np.exp, "tanh": np.tanh, "log": np.log}
_DTYPES = ("float32", "float64")


class _UFuncObject(ctypes.Structure):
    """The start of NumPy's ``PyUFuncObject`` (``numpy/ufuncobject.h``), after the object's
    header: the fields read here, in NumPy 1 and 2 alike."""

    _fields_ = [
        ("head", ctypes.c_byte * object.__basicsize__),
        ("nin", ctypes.c_int),
        ("nout", ctypes.c_int),
        ("nargs", ctypes.c_int),
        ("identity", ctypes.c_int),
        ("functions", ctypes.POINTER(ctypes.c_void_p)),
        ("data", ctypes.POINTER(ctypes.c_void_p)),
        ("ntypes", ctypes.c_int),
        ("reserved1", ctypes.c_int),
        ("name", ctypes.c_char_p),
        ("types", ctypes.POINTER(ctypes.c_ubyte)),
    ]


def _native(ufunc: np.ufunc, dtype: np.dtype) -> tuple[int | None, str]:
    """The address of the inner loop ``ufunc`` runs for ``dtype`` (a one-input ufunc), or
    None; and why not."""
    head = _UFuncObject.from_address(id(ufunc))
    if (head.nin, head.nout, head.nargs, head.ntypes) != (1, 1, 2, ufunc.ntypes) or (
        head.name != ufunc.__name__.encode()
    ):
        return None, "its C structure reads otherwise"
    codes = [np.dtype(char).num for types_ in ufunc.types for char in types_.split("->")]
    if head.types[: 2 * head.ntypes] != codes:
        return None, "its C structure reads otherwise"
    for i in range(head.ntypes):  # NumPy takes the first loop whose types match, no cast
        if codes[2 * i] == codes[2 * i + 1] == dtype.num:
            if head.data[i] is not None:
                return None, "its loop takes data"
            if not head.functions[i]:
                return None, "it has no loop"
            return head.functions[i], "NumPy's loop"
    return None, "it has no loop for the type"


def _probe(dtype: np.dtype) -> np.ndarray:
    """Values that cover what the three functions treat apart: each side of their ranges'
    bounds (underflow, overflow, zero, one, the subnormals, infinities, NaN) and many more."""
    info = np.finfo(dtype)
    special = [0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 0.5, info.max, -info.max]
    powers = np.ldexp(np.array(1.3, dtype), np.arange(info.minexp - info.nmant, info.maxexp))
    lines = [np.linspace(-800.0, 800.0, 4001), np.linspace(-120.0, 120.0, 24001)]
    values = np.concatenate([np.array(special, dtype), powers, -powers, *lines]).astype(dtype)
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2 ** (8 * dtype.itemsize), 4096, dtype=np.uint64, endpoint=False)
    random = bits.astype(np.uint32 if dtype.itemsize == 4 else np.uint64).view(dtype)
    return np.concatenate([values, random])


def _run(address: int, source: np.ndarray, target: np.ndarray) -> None:
    """The inner loop at ``address`` over 1-D ``source`` into ``target``, called from Python."""
    args = (ctypes.c_void_p * 2)(source.ctypes.data, target.ctypes.data)
    dimensions = (ctypes.c_ssize_t * 1)(source.size)
    steps = (ctypes.c_ssize_t * 2)(source.strides[0], target.strides[0])
    _LOOP(address)(args, dimensions, steps, None)


def _same(address: int, ufunc: np.ufunc, dtype: np.dtype) -> bool:
    """Whether the loop at ``address`` gives ``ufunc``'s results bit for bit on the probe: in
    one call, in place, and in short runs at odd places (where a vectorised loop takes its
    tails and unaligned starts apart)."""
    values = _probe(dtype)
    bits = np.dtype(f"u{dtype.itemsize}")
    got, in_place = np.empty_like(values), values.copy()
    with np.errstate(all="ignore"):  # a callback's ufunc would warn
        expected = ufunc(values)
        _run(address, values, got)
        _run(address, in_place, in_place)
        same = [np.array_equal(got.view(bits), expected.view(bits)),
                np.array_equal(in_place.view(bits), expected.view(bits))]  # fmt: skip
        for start, length in zip(range(1001, 1040), range(1, 40)):
            part = in_place[start : start + length]
            part[:] = values[start : start + length]
            _run(address, part, part)
            same.append(
                np.array_equal(part.view(bits), expected[start : start + length].view(bits))
            )
    return all(same)


def _view(address: int, count: int, step: int, dtype: np.dtype) -> np.ndarray:
    """The ``count`` values of ``dtype`` ``step`` bytes apart from ``address``, as an array."""
    span = (count - 1) * step + dtype.itemsize if count else 0
    buffer = (ctypes.c_char * span).from_address(address)
    return np.ndarray((count,), dtype, buffer=buffer, strides=(step,))


def _callback(ufunc: np.ufunc, dtype: np.dtype) -> Any:
    """An inner loop that calls ``ufunc`` from Python: where NumPy's own cannot be taken."""

    def loop(args: int, dimensions: int, steps: int, data: int) -> None:
        count = ctypes.c_ssize_t.from_address(dimensions).value
        source, target = (ctypes.c_void_p * 2).from_address(args)
        source_step, target_step = (ctypes.c_ssize_t * 2).from_address(steps)
        ufunc(
            _view(source, count, source_step, dtype), out=_view(target, count, target_step, dtype)
        )

    return _LOOP(loop)


#: What each name runs: ``"NumPy's loop"``, or why it runs the callback; by (function, dtype).
loops: dict[tuple[str, str], str] = {}
_kept: list[Any] = []  # the callbacks, alive as long as compiled code may call them
_lock = threading.Lock()


def _symbol(name: str, dtype_name: str) -> str:
    """The name compiled code calls the loop of ``name`` for ``dtype_name`` by."""
    return f"xpnn_numpy_{name}_{dtype_name}"


def _load() -> None:
    """Make each function's loop known to numba's linker by its name (see the docstring)."""
    with _lock:
        for name, ufunc in _UFUNCS.items():
            for dtype_name in _DTYPES:
                dtype = np.dtype(dtype_name)
                address, why = _native(ufunc, dtype)
                if address is not None and not _same(address, ufunc, dtype):
                    address, why = None, "its loop gives other numbers"
                if address is None:
                    callback = _callback(ufunc, dtype)
                    _kept.append(callback)
                    address = ctypes.cast(callback, ctypes.c_void_p).value
                    why = f"a callback to NumPy: {why}"
                llvmlite.binding.add_symbol(_symbol(name, dtype_name), address)
                loops[name, dtype_name] = why


_load()


def _caller(symbol: str) -> Any:
    """An intrinsic for compiled code that calls the loop named ``symbol`` over ``count``
    values ``source_step`` and ``target_step`` bytes apart, from and to two addresses: its
    arguments laid out on the stack, as NumPy lays them out for its loops."""

    @numba.extending.intrinsic
    def call(typingctx, source, target, count, source_step, target_step):
        arguments = (source, target, count, source_step, target_step)
        if not all(isinstance(a, types.Integer) for a in arguments):
            return None

        def codegen(context, builder, signature, args):
            byte_pointer = ir.IntType(8).as_pointer()
            size = context.get_value_type(types.intp)
            loop = cgutils.get_or_insert_function(
                builder.module,
                ir.FunctionType(ir.VoidType(), [byte_pointer.as_pointer(), size.as_pointer(),
                                                size.as_pointer(), byte_pointer]),
                symbol,
            )  # fmt: skip
            values = [builder.zext(a, size) if a.type.width < size.width else a for a in args]
            pointers = cgutils.alloca_once(builder, byte_pointer, size=2)
            builder.store(builder.inttoptr(values[0], byte_pointer), pointers)
            builder.store(builder.inttoptr(values[1], byte_pointer),
                          builder.gep(pointers, [ir.Constant(ir.IntType(32), 1)]))  # fmt: skip
            counts = cgutils.alloca_once_value(builder, values[2])
            steps = cgutils.alloca_once(builder, size, size=2)
            builder.store(values[3], steps)
            builder.store(values[4], builder.gep(steps, [ir.Constant(ir.IntType(32), 1)]))
            builder.call(loop, [pointers, counts, steps, ir.Constant(byte_pointer, None)])
            return context.get_dummy_value()

        return types.void(*arguments), codegen

    return call


_CALLERS = {
    (name, dtype_name): _caller(_symbol(name, dtype_name))
    for name in _UFUNCS
    for dtype_name in _DTYPES
}


def _applier(name: str) -> Any:
    """A function for compiled code: ``name`` of a 2-D array into another of its shape."""

    def apply(source, target):  # pragma: no cover - compiled by numba
        raise NotImplementedError("called only from compiled code")

    apply.__name__ = apply.__qualname__ = f"numpy_{name}"

    @numba.extending.overload(apply, jit_options={"nogil": True})
    def _compiled(source, target):
        call = _CALLERS[name, str(source.dtype)]

        def run(source, target):  # pragma: no cover - compiled by numba
            rows, columns = source.shape
            item = source.itemsize
            across, down = source.strides[1], target.strides[1]
            if across == item == down and source.strides[0] == columns * item == target.strides[0]:
                # both C-ordered: one call over every value
                call(source.ctypes.data, target.ctypes.data, rows * columns, item, item)
                return
            for i in range(rows):
                call(source[i].ctypes.data, target[i].ctypes.data, columns, across, down)

        return run

    return apply


exp, tanh, log = _applier("exp"), _applier("tanh"), _applier("log")
