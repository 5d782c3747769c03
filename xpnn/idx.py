"""The IDX format of the MNIST family of data sets (gzip-compressed), read and written.

An IDX file is two zero bytes, a type code (0x08: unsigned bytes, the only type these data sets
use), the number of dimensions, each dimension as a big-endian 32-bit integer, then the values in
C order. Reading checks the header from the first bytes, before it decompresses any values, and
then decompresses no more than the header gives (and the caller allows): a small file cannot
make it allocate more than it holds. Writing goes through ``files.write_atomic``, as model files
do: an interrupted write leaves the old file whole.
"""

from __future__ import annotations

import contextlib
import gzip
import math
import os
import stat
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .files import file_kind, write_atomic

__all__ = ["read_idx", "write_idx"]

UNSIGNED_BYTE = 0x08
#: Deflate encodes at most 258 bytes in 2 bits: no gzip file decompresses to more than this
#: many times its own size (1032, rounded up for the gzip header and trailer).
MAX_GZIP_RATIO = 1040
_CHUNK = 1 << 20


def read_idx(
    path: str | os.PathLike[str], shape: tuple[int | None, ...], *, max_values: int | None = None
) -> np.ndarray:
    """The uint8 array in the gzip IDX file ``path``, whose shape must match ``shape`` (None
    where any size goes) and which may hold at most ``max_values`` values (None: any number).

    ValueError, naming the file, for anything else: not a regular file (a FIFO, a directory,
    a device: refused unopened), not gzip, a truncated or corrupted stream, another magic number
    or type, other dimensions, or more or fewer bytes than they give. The header is checked
    before any value is decompressed, and no more values are decompressed than it gives.
    """
    sizes = shape if isinstance(shape, tuple) else ()
    if not isinstance(shape, tuple) or not all(
        n is None or (type(n) is int and n >= 0) for n in sizes
    ):
        raise TypeError(
            f"shape must be a tuple of sizes (int, or None for any), such as (None, 28, 28); "
            f"got {shape!r:.80}"
        )
    path = Path(path)
    with _opened(path) as (file, stored):
        try:
            with gzip.GzipFile(fileobj=file, mode="rb") as stream:
                return _read(path, stream, stored, shape, max_values)
        except (EOFError, zlib.error, gzip.BadGzipFile) as error:
            raise ValueError(f"{path}: not a readable gzip file ({error})") from error
        except OSError as error:
            if error.errno is None:  # a format error from gzip of no known kind
                raise ValueError(f"{path}: not a readable gzip file ({error})") from error
            raise OSError(error.errno, f"{path}: cannot be read: {error.strerror}") from error


def _read(
    path: Path,
    stream: BinaryIO,
    stored: int,
    shape: tuple[int | None, ...],
    max_values: int | None,
) -> np.ndarray:
    """The array of the IDX ``stream`` (decompressed from ``stored`` bytes), checked."""
    start = stream.read(4)
    if len(start) < 4 or start[:2] != b"\0\0":
        raise ValueError(f"{path}: not an IDX file (it does not start with two zero bytes)")
    kind, ndim = start[2], start[3]
    if kind != UNSIGNED_BYTE:
        raise ValueError(
            f"{path}: IDX type code 0x{kind:02x}; expected 0x08 (unsigned bytes), which the "
            "images and labels of these data sets use"
        )
    if ndim != len(shape):
        raise ValueError(f"{path}: {ndim} dimensions; expected {len(shape)}")
    raw = stream.read(4 * ndim)
    if len(raw) < 4 * ndim:
        raise ValueError(f"{path}: the header is cut short ({4 + len(raw)} bytes)")
    dims = struct.unpack(f">{ndim}I", raw)
    for got, want in zip(dims, shape):
        if want is not None and got != want:
            raise ValueError(f"{path}: dimensions {dims}; expected {_shape_text(shape)}")
    size = math.prod(dims)  # exact: Python integers do not overflow
    if max_values is not None and size > max_values:
        raise ValueError(
            f"{path}: the header gives dimensions {dims}, {size} values; expected at most "
            f"{max_values}"
        )
    if 4 + 4 * ndim + size > MAX_GZIP_RATIO * stored:
        raise ValueError(
            f"{path}: the header gives dimensions {dims}, {size} bytes of values, more than a "
            f"gzip file of {stored} bytes can hold"
        )
    try:
        values = np.empty(dims, dtype=np.uint8)
    except (ValueError, MemoryError) as error:
        raise ValueError(
            f"{path}: NumPy cannot make an array of dimensions {dims} ({error})"
        ) from None
    flat = memoryview(values.reshape(-1))
    done = 0
    while done < size:
        count = stream.readinto(flat[done : done + _CHUNK])
        if not count:
            raise ValueError(
                f"{path}: the header gives dimensions {dims}, {size} bytes of values, but only "
                f"{done} follow it"
            )
        done += count
    if stream.read(1):  # also reads the gzip trailer, so its checksum is checked
        raise ValueError(
            f"{path}: the header gives dimensions {dims}, {size} bytes of values, but more "
            "follow it"
        )
    return values


@contextlib.contextmanager
def _opened(path: Path) -> Iterator[tuple[BinaryIO, int]]:
    """``path`` opened for reading, with its size, if it is a regular file (symlinks followed).

    Anything else is refused from ``os.stat`` alone, unopened: opening a FIFO would wait for a
    writer forever. The open is non-blocking too, should a FIFO take its place meanwhile.
    """
    _require_regular(path, os.stat(path).st_mode)
    flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0)
    with open(os.open(path, flags), "rb") as file:
        status = os.fstat(file.fileno())
        _require_regular(path, status.st_mode)
        yield file, status.st_size


def _require_regular(path: Path, mode: int) -> None:
    if not stat.S_ISREG(mode):
        raise ValueError(f"{path}: it is {file_kind(mode)}, not a regular file")


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write the uint8 ``array`` to ``path`` as a gzip IDX file (as the data sets ship).

    The file is written whole or not at all: through a temporary file renamed onto ``path``,
    as model files are saved. A dimension that IDX cannot hold (2**32 or more) raises a
    ValueError before anything is written.
    """
    array = np.asarray(array, order="C")  # C order; a 0-d array stays 0-d
    if array.dtype != np.uint8:
        raise TypeError(f"array must hold uint8 values; got {array.dtype}")
    if any(n >= 1 << 32 for n in array.shape):
        raise ValueError(
            f"array of shape {array.shape} cannot be written to {path} as IDX: its header "
            "holds each dimension in 32 bits, so each must be below 2**32"
        )
    header = bytes([0, 0, UNSIGNED_BYTE, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    write_atomic(path, gzip.compress(header + array.tobytes(), compresslevel=9, mtime=0))


def _shape_text(shape: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("any" if n is None else str(n) for n in shape) + ")"
