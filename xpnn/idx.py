"""The IDX format of the MNIST family of data sets (gzip-compressed), read and written.

An IDX file is two zero bytes, a type code (0x08: unsigned bytes, the only type these data sets
use), the number of dimensions, each dimension as a big-endian 32-bit integer, then the values in
C order. Reading checks every part of that against the file's size before it trusts a byte.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

__all__ = ["read_idx", "write_idx"]

UNSIGNED_BYTE = 0x08


def read_idx(path: str | os.PathLike, shape: tuple[int | None, ...]) -> np.ndarray:
    """The uint8 array in the gzip IDX file ``path``, whose shape must match ``shape`` (None
    where any size goes).

    ValueError, naming the file, for anything else: not gzip, a truncated or corrupted stream,
    another magic number or type, other dimensions, or more or fewer bytes than they give.
    """
    path = Path(path)
    try:
        with gzip.open(path, "rb") as file:
            data = file.read()
    except (OSError, EOFError, zlib.error) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise ValueError(f"{path}: not a readable gzip file ({error})") from error
    if len(data) < 4 or data[:2] != b"\0\0":
        raise ValueError(f"{path}: not an IDX file (it does not start with two zero bytes)")
    kind, ndim = data[2], data[3]
    if kind != UNSIGNED_BYTE:
        raise ValueError(
            f"{path}: IDX type code 0x{kind:02x}; expected 0x08 (unsigned bytes), which the "
            "images and labels of these data sets use"
        )
    if ndim != len(shape):
        raise ValueError(f"{path}: {ndim} dimensions; expected {len(shape)}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: the header is cut short ({len(data)} bytes)")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    for got, want in zip(dims, shape):
        if want is not None and got != want:
            raise ValueError(f"{path}: dimensions {dims}; expected {_shape_text(shape)}")
    size = int(np.prod(dims, dtype=np.int64))
    if len(data) - header != size:
        raise ValueError(
            f"{path}: the header gives dimensions {dims}, {size} bytes of values, but "
            f"{len(data) - header} follow it"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write the uint8 ``array`` to ``path`` as a gzip IDX file (as the data sets ship)."""
    array = np.ascontiguousarray(array)
    if array.dtype != np.uint8:
        raise TypeError(f"array must hold uint8 values; got {array.dtype}")
    header = bytes([0, 0, UNSIGNED_BYTE, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as file:
        file.write(header + array.tobytes())


def _shape_text(shape: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("any" if n is None else str(n) for n in shape) + ")"
