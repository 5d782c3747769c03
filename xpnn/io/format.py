"""The xpnn file format: what a file holds, its limits, its checksum, and how it is written.

A model file is one safetensors file: a little-endian u64 length, a JSON header of that length
(the tensor table and the ``__metadata__`` text entries), then the tensors' bytes end to end.
Its tensors are the parameters (``params.<k>.<name>``, the k-th layer with parameters, as
``Model.get_parameters()`` orders them) and, in a checkpoint, the optimizer's state buffers
(``optimizer.<prefix>_momentums``, ``optimizer.<prefix>_cache``) and the sample order of an
epoch Ctrl-C stopped (``state.epoch_order``); float32, float64 and int64 only. Its metadata holds
``format`` ("xpnn"), ``version`` (``FORMAT_VERSION``), ``kind`` ("model" or "parameters"),
``model``: the architecture as JSON (dtype, seed, each layer, the loss, the optimizer and the
metric by class name and constructor settings, each part's ``config()``), in a checkpoint
``state``: the training state as JSON (``checkpoints.py``), and ``sha256``: a SHA-256 of every
tensor and metadata entry, which detects corruption. The header may take at most
``MAX_HEADER_BYTES``.

Writes are atomic (``files.py``): the bytes go to a temporary file beside the target, are
flushed to disk, and replace the target in one ``os.replace``; a crash at any moment leaves the
old file or the new one, never a mixture (a killed process may leave its
``.<name>.<random>.tmp`` file behind). Reading a file is ``reader.py``'s.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import safetensors.numpy

from ..backends import to_numpy
from ..files import shown

__all__ = [
    "DTYPES",
    "FORMAT",
    "FORMAT_VERSION",
    "MAX_HEADER_BYTES",
    "Checksum",
    "Invalid",
    "XpnnFileError",
    "digest",
    "dumps",
    "expect",
    "serialize",
]

#: The file format version this xpnn writes and the newest it reads.
FORMAT_VERSION = 1
FORMAT = "xpnn"
#: The dtypes a model (and its parameters in a file) may have.
DTYPES = ("float32", "float64")
#: The largest header a file may declare: its tensor table and the JSON of the architecture and
#: training state. A Dense layer with its activation takes some 400 bytes of it, so 16 MiB holds
#: some 80,000 layers; a longer header is refused before it is read.
MAX_HEADER_BYTES = 16 * 2**20


class XpnnFileError(ValueError):
    """A file that cannot be loaded: missing, unreadable, truncated, corrupted, tampered with,
    another format, a newer format version, or contents that do not fit the model.

    ``path`` is the file and ``problem`` what is wrong with it; the message names both.
    """

    def __init__(self, path: Any, problem: str) -> None:
        self.path = shown(path)
        self.problem = problem
        super().__init__(f"cannot load {self.path}: {problem}")

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.path, self.problem)


class Invalid(Exception):
    """A problem found while reading; turned into XpnnFileError with the path."""


def expect(condition: bool, problem: str) -> None:
    """Raise ``Invalid(problem)`` unless ``condition``."""
    if not condition:
        raise Invalid(problem)


def dumps(value: Any) -> str:
    """``value`` as the compact, sorted JSON a file's metadata holds."""
    return json.dumps(value, allow_nan=False, sort_keys=True, separators=(",", ":"))


def serialize(tensors: Mapping[str, Any], metadata: Mapping[str, str]) -> bytes:
    """The file's bytes: contiguous little-endian host tensors, metadata and its checksum."""
    host = {}
    for name, value in tensors.items():
        array = np.asarray(to_numpy(value))
        if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
            raise ValueError(f"{name} holds NaN or infinity: such a model cannot be saved")
        # safetensors writes wrong values for non-contiguous arrays: always pass a dense copy.
        host[name] = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    metadata = {"format": FORMAT, "version": str(FORMAT_VERSION), **metadata}
    metadata["sha256"] = digest(metadata, host)
    data = safetensors.numpy.save(host, metadata=metadata)
    length = int.from_bytes(data[:8], "little")
    if length > MAX_HEADER_BYTES:  # never write a file that loading would refuse
        raise ValueError(
            f"the model cannot be saved: its description (architecture, training state, "
            f"tensor table) takes {length} bytes, more than the {MAX_HEADER_BYTES} an xpnn "
            f"file may have (some 80,000 layers)"
        )
    return data


def digest(metadata: Mapping[str, str], tensors: Mapping[str, np.ndarray]) -> str:
    """SHA-256 over every metadata entry (but itself) and every tensor's name, type and bytes."""
    checksum = Checksum(metadata)
    for name in sorted(tensors):
        array = tensors[name]
        array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
        checksum.tensor(name, array.dtype, array.shape, array.nbytes)
        checksum.update(memoryview(array.reshape(-1).view(np.uint8)))
    return checksum.hexdigest()


class Checksum:
    """The SHA-256 that ``digest`` computes, fed a piece at a time while a file is read."""

    def __init__(self, metadata: Mapping[str, str]) -> None:
        self._hash = hashlib.sha256()
        for key in sorted(metadata):
            if key != "sha256":
                self._feed(key.encode("utf-8", "surrogatepass"))
                self._feed(metadata[key].encode("utf-8", "surrogatepass"))

    def _feed(self, data: bytes) -> None:
        self._hash.update(len(data).to_bytes(8, "little"))
        self._hash.update(data)

    def tensor(self, name: str, dtype: np.dtype, shape: tuple[int, ...], nbytes: int) -> None:
        """Start a tensor: its name, type and shape; ``update`` then takes its ``nbytes``."""
        self._feed(name.encode("utf-8", "surrogatepass"))
        self._feed(f"{dtype.newbyteorder('<').str}{list(shape)}".encode())
        self._hash.update(nbytes.to_bytes(8, "little"))

    def update(self, data: Any) -> None:
        """Feed bytes of the current tensor."""
        self._hash.update(data)

    def hexdigest(self) -> str:
        """The checksum as written in the file's ``sha256`` metadata."""
        return self._hash.hexdigest()
