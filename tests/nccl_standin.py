"""A stand-in ``cupy.cuda.nccl`` for the CuPy API stand-in (tests/cupy_api.py): NCCL's
communicator played by threads of one process, each call checked against CuPy 14.2's.

Without a GPU the real module cannot load (no libnccl), so its signatures are kept here as CuPy
14.2 embeds them in its compiled module (``tests/test_cupy_api.py`` checks them against the
installed module's text). Every argument is checked as Cython would convert it (``int`` for
``int``, ``intptr_t`` and ``size_t``; ``bytes`` for the unique id); a buffer is found by its
address (``ndarray.data.ptr``) and its datatype must be its array's; the reduction operator
must be one of NCCL's. Ranks of one communicator (threads, one per rank) meet at every call, as
NCCL's collectives do: two ranks on one device fail as NCCL fails ("Duplicate GPU detected").
"""

from __future__ import annotations

import collections
import inspect
import os
import threading
import types
from collections.abc import Callable
from typing import Any

import numpy as np

#: The signatures CuPy 14.2's ``cupy_backends/cuda/libs/nccl`` module embeds (its docstrings).
SIGNATURES = {
    "get_unique_id": "get_unique_id()",
    "NcclCommunicator": "NcclCommunicator(int ndev, bytes commId, int rank, "
    "NcclConfig config=None)",
    "allReduce": "NcclCommunicator.allReduce(self, intptr_t sendbuf, intptr_t recvbuf, "
    "size_t count, int datatype, int op, intptr_t stream)",
    "bcast": "NcclCommunicator.bcast(self, intptr_t buff, size_t count, int datatype, int root, "
    "intptr_t stream)",
    "destroy": "NcclCommunicator.destroy(self)",
    "abort": "NcclCommunicator.abort(self)",
}
#: NCCL's datatypes (ncclDataType_t) and reduction operators (ncclRedOp_t), as nccl.h numbers them.
DATATYPES = {
    "NCCL_INT8": ("int8", 0), "NCCL_CHAR": ("int8", 0), "NCCL_UINT8": ("uint8", 1),
    "NCCL_INT32": ("int32", 2), "NCCL_INT": ("int32", 2), "NCCL_UINT32": ("uint32", 3),
    "NCCL_INT64": ("int64", 4), "NCCL_UINT64": ("uint64", 5), "NCCL_FLOAT16": ("float16", 6),
    "NCCL_HALF": ("float16", 6), "NCCL_FLOAT32": ("float32", 7), "NCCL_FLOAT": ("float32", 7),
    "NCCL_FLOAT64": ("float64", 8), "NCCL_DOUBLE": ("float64", 8),
}  # fmt: skip
OPERATORS = {"NCCL_SUM": 0, "NCCL_PROD": 1, "NCCL_MAX": 2, "NCCL_MIN": 3, "NCCL_AVG": 4}
_REDUCE = {0: np.add, 1: np.multiply, 2: np.maximum, 3: np.minimum}
_DTYPE_OF = {number: np.dtype(name) for name, number in DATATYPES.values()}
_C_INTS = {"int", "intptr_t", "size_t"}
TIMEOUT = 30

counts: collections.Counter[str] = collections.Counter()


class NcclError(RuntimeError):
    """Stands in for ``cupy.cuda.nccl.NcclError``."""


def _parse(text: str) -> tuple[inspect.Signature, dict[str, str]]:
    """A signature line as (signature, C type of each parameter)."""
    inside = text[text.index("(") + 1 : text.rindex(")")]
    params, kinds = [], {}
    for part in filter(None, (p.strip() for p in inside.split(","))):
        declaration, equals, _ = part.partition("=")
        words = declaration.split()
        name = words[-1]
        if name == "self":
            continue
        kinds[name] = words[0] if len(words) == 2 else ""
        default = None if equals else inspect.Parameter.empty
        params.append(
            inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default)
        )
    return inspect.Signature(params), kinds


def _checked(name: str, args: tuple, kwargs: dict) -> dict[str, Any]:
    """The arguments bound to CuPy's signature of ``name``, each of the C type it declares."""
    counts[name] += 1
    sig, kinds = _parse(SIGNATURES[name])
    try:
        bound = sig.bind(*args, **kwargs)
    except TypeError as error:
        raise TypeError(f"cupy.cuda.nccl.{name}: {error} (CuPy: {SIGNATURES[name]})") from None
    for param, value in bound.arguments.items():
        kind = kinds[param]
        if kind in _C_INTS and (isinstance(value, bool) or not isinstance(value, int)):
            raise TypeError(
                f"cupy.cuda.nccl.{name}: {param} must be an int ({kind}); got {value!r}"
            )
        if kind in ("size_t",) and value < 0:
            raise OverflowError(f"cupy.cuda.nccl.{name}: {param} is negative: {value}")
        if kind == "bytes" and not isinstance(value, bytes):
            raise TypeError(f"cupy.cuda.nccl.{name}: {param} must be bytes; got {type(value)}")
    return bound.arguments


class _Clique:
    """The ranks of one NCCL communicator: a barrier and a slot per rank."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.barrier = threading.Barrier(size, timeout=TIMEOUT)
        self.slots: list[Any] = [None] * size
        self.devices: dict[int, int] = {}

    def meet(self, rank: int, value: Any) -> list[Any]:
        self.slots[rank] = value
        self.barrier.wait()
        every = list(self.slots)
        self.barrier.wait()
        return every


def build(real: Any, pointers: dict[int, np.ndarray], device: Callable[[], int]) -> Any:
    """The stand-in module: ``pointers`` maps device addresses to the arrays there, ``device()``
    is the calling thread's current device."""
    cliques: dict[bytes, _Clique] = {}
    lock = threading.Lock()
    module = types.ModuleType("cupy.cuda.nccl")
    module.available = True
    module.NcclError = NcclError
    for name, (_, number) in DATATYPES.items():
        setattr(module, name, number)
    for name, number in OPERATORS.items():
        setattr(module, name, number)

    def get_unique_id(*args: Any, **kwargs: Any) -> bytes:
        _checked("get_unique_id", args, kwargs)
        return os.urandom(128)

    def buffer(call: str, pointer: int, count: int, datatype: int) -> np.ndarray:
        if datatype not in _DTYPE_OF:
            raise NcclError(
                f"NCCL_ERROR_INVALID_ARGUMENT: {call}: datatype {datatype} is none of NCCL's"
            )
        if pointer not in pointers:
            raise NcclError(
                f"NCCL_ERROR_INVALID_ARGUMENT: {call}: {pointer:#x} is no device buffer"
            )
        array = pointers[pointer]
        if not array.flags.c_contiguous:
            raise NcclError(f"NCCL_ERROR_INVALID_ARGUMENT: {call}: NCCL would read past a view")
        if _DTYPE_OF[datatype] != array.dtype:
            raise NcclError(
                f"NCCL_ERROR_INVALID_ARGUMENT: {call}: datatype {datatype} "
                f"({_DTYPE_OF[datatype]}) for a buffer of {array.dtype}"
            )
        if count > array.size:
            raise NcclError(f"NCCL_ERROR_INVALID_ARGUMENT: {call}: {count} values past the buffer")
        return array.reshape(-1)[:count]

    class NcclCommunicator:
        """Stands in for ``cupy.cuda.nccl.NcclCommunicator``: one rank, its clique's threads."""

        __module__ = "cupy_backends.cuda.libs.nccl"

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            given = _checked("NcclCommunicator", args, kwargs)
            ndev, unique_id, rank = given["ndev"], given["commId"], given["rank"]
            if len(unique_id) != 128 or not 0 <= rank < ndev:
                raise NcclError("NCCL_ERROR_INVALID_ARGUMENT: commId or rank")
            with lock:
                clique = cliques.setdefault(unique_id, _Clique(ndev))
            if clique.size != ndev:
                raise NcclError("NCCL_ERROR_INVALID_ARGUMENT: ranks disagree on ndev")
            self._clique, self._rank, self._device = clique, rank, device()
            every = clique.meet(rank, self._device)  # ncclCommInitRank waits for every rank
            if len(set(every)) != len(every):
                raise NcclError("NCCL_ERROR_INVALID_USAGE: Duplicate GPU detected")
            self.alive = True

        def _live(self, call: str) -> None:
            if not self.alive:
                raise NcclError(f"NCCL_ERROR_INVALID_USAGE: {call} on a destroyed communicator")
            if device() != self._device:
                raise NcclError(f"NCCL_ERROR_INVALID_USAGE: {call} from another current device")

        def allReduce(self, *args: Any, **kwargs: Any) -> None:
            given = _checked("allReduce", args, kwargs)
            self._live("allReduce")
            count, datatype, op = given["count"], given["datatype"], given["op"]
            send = buffer("allReduce", given["sendbuf"], count, datatype)
            receive = buffer("allReduce", given["recvbuf"], count, datatype)
            if op not in OPERATORS.values():
                raise NcclError(
                    f"NCCL_ERROR_INVALID_ARGUMENT: allReduce: op {op} is none of NCCL's"
                )
            every = self._clique.meet(self._rank, send.copy())
            total = every[0].copy()
            for part in every[1:]:
                total = _REDUCE.get(op, np.add)(total, part)
            receive[...] = total / len(every) if op == OPERATORS["NCCL_AVG"] else total

        def bcast(self, *args: Any, **kwargs: Any) -> None:
            given = _checked("bcast", args, kwargs)
            self._live("bcast")
            data = buffer("bcast", given["buff"], given["count"], given["datatype"])
            root = given["root"]
            if not 0 <= root < self._clique.size:
                raise NcclError(f"NCCL_ERROR_INVALID_ARGUMENT: bcast: root {root}")
            every = self._clique.meet(self._rank, data.copy())
            data[...] = every[root]

        def destroy(self, *args: Any, **kwargs: Any) -> None:
            _checked("destroy", args, kwargs)
            self.alive = False

        def abort(self, *args: Any, **kwargs: Any) -> None:
            _checked("abort", args, kwargs)
            self.alive = False

    module.get_unique_id = get_unique_id
    module.NcclCommunicator = NcclCommunicator
    return module
