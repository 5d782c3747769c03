"""Reading an xpnn file safely: nothing from the file runs, and nothing unchecked is read.

Only a regular file is opened (``os.stat`` first, symlinks followed). Its header comes first: a
length of at most ``MAX_HEADER_BYTES``, then JSON whose metadata must say xpnn wrote it, whose
tensor table must tile the rest of the file exactly, and whose every tensor must have a type
xpnn writes. The caller then checks every declared tensor against what it wants
(``check_declared``) before ``read_tensors`` reads them, each straight into its own array, and
checks them against the SHA-256. ``reading`` turns any problem into one :class:`XpnnFileError`
naming the file and the problem.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import stat
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any, BinaryIO, NamedTuple

import numpy as np

from ..files import file_kind
from .format import (
    FORMAT,
    FORMAT_VERSION,
    MAX_HEADER_BYTES,
    Checksum,
    Invalid,
    XpnnFileError,
    expect,
)

__all__ = [
    "Opened",
    "Tensor",
    "Want",
    "check_declared",
    "check_finite",
    "check_keys",
    "loads",
    "open_file",
    "read_tensors",
    "reading",
]

PathLike = str | os.PathLike

_VERSION = re.compile(r"[0-9]{1,9}")
# The tensor types xpnn writes (safetensors' names) and their little-endian NumPy types.
_TENSOR_TYPES = {"F32": np.dtype("<f4"), "F64": np.dtype("<f8"), "I64": np.dtype("<i8")}
_TENSOR_NAMES = {"F32": "float32", "F64": "float64", "I64": "int64"}
# Safetensors' other types, named for messages only.
_OTHER_TYPES = {
    "BOOL": "bool",
    "U8": "uint8",
    "I8": "int8",
    "U16": "uint16",
    "I16": "int16",
    "F16": "float16",
    "BF16": "bfloat16",
    "U32": "uint32",
    "I32": "int32",
    "U64": "uint64",
    "F8_E4M3": "float8_e4m3",
    "F8_E5M2": "float8_e5m2",
}
_MAX_RANK = 8  # xpnn's tensors have at most 2 dimensions
_CHUNK = 2**20  # bytes of a tensor that is checked but not kept, read and hashed at a time


class Tensor(NamedTuple):
    """A tensor as the header declares it: its type, its shape, its bytes in the data region."""

    dtype: np.dtype
    type_name: str  # the dtype's NumPy name, which np.dtype.name computes slowly
    shape: tuple[int, ...]
    begin: int
    end: int


class Want(NamedTuple):
    """What a tensor must be: one of ``dtypes`` (NumPy names) and ``shape``; and if required."""

    dtypes: tuple[str, ...]
    shape: tuple[int, ...]
    required: bool = True


class Opened(NamedTuple):
    """A regular file, open, with its header read and checked; nothing else read yet."""

    file: BinaryIO
    metadata: dict[str, str]
    tensors: dict[str, Tensor]
    data_start: int


@contextlib.contextmanager
def reading(path: PathLike) -> Iterator[None]:
    """Turn every problem met while reading ``path`` into one XpnnFileError naming it."""
    try:
        yield
    except XpnnFileError:
        raise
    except Invalid as error:
        raise XpnnFileError(path, str(error)) from None
    except FileNotFoundError:
        raise XpnnFileError(path, "no such file") from None
    except OSError as error:
        raise XpnnFileError(path, f"it cannot be read ({error.strerror or error})") from error
    except MemoryError:
        raise XpnnFileError(path, "there is not enough memory to load it") from None
    except (
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        AttributeError,
        OverflowError,
        RecursionError,
    ) as error:  # a last resort: the checks above should have named the problem
        raise XpnnFileError(
            path, f"it is damaged or not an xpnn file ({type(error).__name__}: {error})"
        ) from error


@contextlib.contextmanager
def open_file(path: str | bytes) -> Iterator[Opened]:
    """The regular file at ``path`` (symlinks followed), open, and its checked header.

    Anything else (a directory, a FIFO, a device) is refused from ``os.stat`` alone, unopened.
    """
    try:
        mode = os.stat(path).st_mode
    except ValueError as error:  # a NUL in the name
        raise Invalid(f"its name is not a file name ({error})") from None
    _require_regular(path, mode)
    # Non-blocking, should a FIFO take the file's place between the two looks.
    flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0)
    with open(os.open(path, flags), "rb", buffering=0) as file:
        status = os.fstat(file.fileno())
        _require_regular(path, status.st_mode)  # the file opened is one that may be read
        yield _read_header(file, status.st_size)


def _require_regular(path: str | bytes, mode: int) -> None:
    if stat.S_ISREG(mode):
        return
    kind = file_kind(mode)
    if os.path.islink(path):
        target = os.fsdecode(os.path.realpath(path))
        raise Invalid(f"it is a symlink to {target}, which is {kind}, not a regular file")
    raise Invalid(f"it is {kind}, not a regular file")


def _read_into(file: BinaryIO, buffer: memoryview) -> None:
    done = 0
    while done < len(buffer):
        count = file.readinto(buffer[done:])
        expect(bool(count), "it is truncated: it became shorter while it was read")
        done += count


def _read_header(file: BinaryIO, size: int) -> Opened:
    """Read and check the safetensors header: a little-endian u64 length, then that much JSON
    (the tensor table and ``__metadata__``). Nothing beyond it is read."""
    invalid = "it is not a valid safetensors file (empty, truncated or another format)"
    expect(size >= 8, f"{invalid}: it holds {size} bytes, fewer than the header's 8")
    prefix = bytearray(8)
    _read_into(file, memoryview(prefix))
    length = int.from_bytes(prefix, "little")
    expect(
        length <= MAX_HEADER_BYTES,
        f"{invalid}: its header would take {length} bytes, more than the {MAX_HEADER_BYTES} "
        f"an xpnn file may have",
    )
    expect(
        8 + length <= size,
        f"{invalid}: its header would take {length} bytes, but only {size - 8} follow",
    )
    raw = bytearray(length)
    _read_into(file, memoryview(raw))
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys("its header"))
    except (ValueError, RecursionError) as error:
        raise Invalid(f"{invalid}: its header is not JSON ({error!s:.100})") from None
    del raw
    expect(isinstance(header, dict), f"{invalid}: its header is not a JSON object")
    metadata = header.pop("__metadata__", None)
    expect(
        isinstance(metadata, dict) and metadata.get("format") == FORMAT,
        "it is a safetensors file but not one xpnn wrote (its metadata has no format 'xpnn')",
    )
    expect(all(isinstance(v, str) for v in metadata.values()), "its metadata is not text")
    version = metadata.get("version")
    expect(
        isinstance(version, str) and _VERSION.fullmatch(version) is not None,
        f"its format version {version!r:.80} is not a number",
    )
    expect(
        int(version) <= FORMAT_VERSION,
        f"it was written in format version {version}, newer than this xpnn reads "
        f"({FORMAT_VERSION}): upgrade xpnn",
    )
    expect(int(version) >= 1, f"its format version {version} does not exist")
    tensors = {name: _declared(name, entry) for name, entry in header.items()}
    # The tensors' bytes lie end to end, in any order, and fill the rest of the file.
    position, available = 0, size - 8 - length
    for begin, end, name in sorted((t.begin, t.end, name) for name, t in tensors.items()):
        expect(
            begin == position,
            f"it is damaged or not a valid safetensors file: tensor {name!r:.80} starts at byte "
            f"{begin} of the data, not at {position} where the previous one ends",
        )
        position = end
    expect(
        position <= available,
        f"it is truncated: its tensors take {position} bytes after the header, but only "
        f"{available} follow",
    )
    expect(
        position == available,
        f"it is damaged: {available - position} bytes follow its last tensor",
    )
    return Opened(file, metadata, tensors, 8 + length)


def _unique_keys(where: str) -> Callable[[list[tuple[str, Any]]], dict[str, Any]]:
    """A ``json.loads`` hook that refuses a key named twice in one object of ``where``: the
    last would win, unseen by a reader that takes the first."""

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result = dict(pairs)
        if len(result) != len(pairs):
            seen: set[str] = set()
            twice = next(key for key, _ in pairs if key in seen or seen.add(key))
            raise Invalid(f"{where} names the key {twice!r:.80} twice in one object")
        return result

    return unique


def _declared(name: str, entry: Any) -> Tensor:
    """One entry of the tensor table, checked: a type xpnn writes, a shape, a byte range."""
    what = f"tensor {name!r:.80}"
    expect(
        isinstance(entry, dict) and set(entry) == {"dtype", "shape", "data_offsets"},
        f"its header's entry for {what} is not a tensor's",
    )
    code, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not (isinstance(code, str) and code in _TENSOR_TYPES):
        named = _OTHER_TYPES.get(code, f"{code!r:.20}") if isinstance(code, str) else "?"
        raise Invalid(
            f"{what} has dtype {named}: an xpnn file holds float32, float64 and int64 tensors only"
        )
    expect(
        isinstance(shape, list)
        and len(shape) <= _MAX_RANK
        and all(type(n) is int and n >= 0 for n in shape),
        f"{what} has an invalid shape {shape!r:.80}",
    )
    expect(
        isinstance(offsets, list)
        and len(offsets) == 2
        and all(type(n) is int for n in offsets)
        and 0 <= offsets[0] <= offsets[1],
        f"{what} has invalid data offsets {offsets!r:.80}",
    )
    dtype = _TENSOR_TYPES[code]
    size = math.prod(shape) * dtype.itemsize
    expect(
        offsets[1] - offsets[0] == size,
        f"{what} is {code}{shape}, {size} bytes, but its data offsets span "
        f"{offsets[1] - offsets[0]} bytes",
    )
    return Tensor(dtype, _TENSOR_NAMES[code], tuple(shape), offsets[0], offsets[1])


def check_declared(declared: Mapping[str, Tensor], wanted: Mapping[str, Want]) -> None:
    """Every wanted tensor is declared (if required) with a wanted type and shape."""
    for name, want in wanted.items():
        tensor = declared.get(name)
        if tensor is None:
            expect(not want.required, f"tensor {name!r} is missing")
            continue
        expect(
            tensor.type_name in want.dtypes,
            f"tensor {name!r} has dtype {tensor.type_name}, not {' or '.join(want.dtypes)}",
        )
        expect(
            tensor.shape == want.shape,
            f"tensor {name!r} has shape {tensor.shape}, but the model needs {want.shape}",
        )


def read_tensors(opened: Opened, keep: Collection[str]) -> dict[str, np.ndarray]:
    """The tensors named in ``keep``, read; every tensor's bytes go through the SHA-256 check.

    Call it once every declared tensor has been checked: it allocates what they declare. The
    others are read in chunks of ``_CHUNK`` bytes, hashed and dropped.
    """
    checksum = Checksum(opened.metadata)
    arrays, file = {}, opened.file
    for name in sorted(opened.tensors):
        tensor = opened.tensors[name]
        checksum.tensor(name, tensor.dtype, tensor.shape, tensor.end - tensor.begin)
        file.seek(opened.data_start + tensor.begin)
        if name in keep:
            array = np.empty(tensor.shape, tensor.dtype)
            view = memoryview(array.reshape(-1).view(np.uint8))
            _read_into(file, view)
            checksum.update(view)
            arrays[name] = array
            continue
        left = tensor.end - tensor.begin
        chunk = memoryview(bytearray(min(left, _CHUNK)))
        while left:
            part = chunk[: min(left, _CHUNK)]
            _read_into(file, part)
            checksum.update(part)
            left -= len(part)
    expect(
        opened.metadata.get("sha256") == checksum.hexdigest(),
        "it is corrupted: its contents do not match their SHA-256 checksum",
    )
    return arrays


def check_finite(arrays: Mapping[str, np.ndarray], into: str) -> None:
    """Every float tensor finite as saved, and in ``into``, the dtype it is loaded in."""
    for name, array in arrays.items():
        if array.dtype.kind == "f":
            expect(bool(np.all(np.isfinite(array))), f"tensor {name!r} holds NaN or infinity")
            if array.dtype.name != into:
                with np.errstate(over="ignore"):
                    fits = bool(np.all(np.isfinite(array.astype(into))))
                expect(
                    fits, f"tensor {name!r} holds values beyond {into}'s range, the model's dtype"
                )


def loads(metadata: dict[str, str], key: str) -> dict[str, Any]:
    """The JSON object in the metadata entry ``key``, each key once."""
    expect(key in metadata, f"its metadata has no {key!r} entry")
    try:
        value = json.loads(metadata[key], object_pairs_hook=_unique_keys(f"its {key!r} metadata"))
    except (ValueError, RecursionError) as error:
        raise Invalid(f"its {key!r} metadata is not valid JSON ({error})") from None
    expect(isinstance(value, dict), f"its {key!r} metadata is not a JSON object")
    return value


def check_keys(value: Any, keys: set[str], what: str) -> dict[str, Any]:
    """``value``, checked to be a JSON object with exactly ``keys``."""
    expect(isinstance(value, dict), f"{what} must be a JSON object; got {value!r:.80}")
    expect(
        set(value) == keys, f"{what} must have the keys {sorted(keys)}; got {sorted(value)!r:.200}"
    )
    return value
