"""Saving and loading models: safe persistence, in a format that holds no code.

A model file is one safetensors file. Its tensors are the parameters (``params.<k>.<name>``, the
k-th layer with parameters, as ``Model.get_parameters()`` orders them) and, in a checkpoint, the
optimizer's state buffers (``optimizer.<prefix>_momentums``, ``optimizer.<prefix>_cache``). Its
text metadata holds the architecture as JSON: dtype, seed, each layer, the loss, the optimizer and
the metric, by class name and constructor settings (each part's ``config()``); a checkpoint
(``Model.save`` writes one) adds the training state
(optimizer step count and rate, the model's shuffling generator, each Dropout's mask seed and
count, the
caller's ``checkpoint`` dict such as ``{"epoch": 12}``) and, if Ctrl-C stopped training inside
an epoch, where it stopped (``epoch_in_progress``) with that epoch's sample order
(``state.epoch_order``). A SHA-256 of every tensor and metadata entry detects corruption.

This module knows no Model. The shapes a file must hold come from each layer class
(``parameter_shapes``, ``widths``), and a model is built through the class ``Model.load`` passes
in, with the book's API.

Loading runs nothing from the file and reads nothing it has not checked. Only a regular file is
opened (``os.stat`` first, symlinks followed). Its header comes first: a length of at most
``MAX_HEADER_BYTES``, then JSON whose metadata must say xpnn wrote it, whose tensor table must
tile the rest of the file exactly, and whose every tensor must have the type and shape the
architecture gives it. Only then are the tensors read, each straight into its own array, and
checked against the SHA-256. Class names are looked up in a fixed table of xpnn's own classes,
settings go through the constructors' own checks, and every value is checked before a model is
returned. Anything wrong raises :class:`XpnnFileError` (a ``ValueError``) naming the file and
the problem.

Writes are atomic (``files.py``): the bytes go to a temporary file beside the target, are
flushed to disk, and replace the target in one ``os.replace``; a crash at any moment leaves the
old file or the new one, never a mixture (a killed process may leave its
``.<name>.<random>.tmp`` file behind). Only a regular file (or none yet) is replaced, through
symlinks if need be; a failed write raises an OSError that names the target and the cause, and
removes the temporary file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import stat
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple

import numpy as np
import safetensors.numpy

from ..backends import Backend, get_backend, to_numpy
from ..building import size_problem
from ..description import (
    LAYERS,
    LOSSES,
    MAX_COUNT,
    MAX_SEED,
    METRICS,
    OPTIMIZERS,
    check_count,
    checkpoint_info,
    describe_model,
)
from ..files import file_kind, file_name, save_target, shown, write_atomic
from ..training import EpochInProgress

if TYPE_CHECKING:
    from .model import Model

__all__ = [
    "FORMAT_VERSION",
    "MAX_HEADER_BYTES",
    "XpnnFileError",
    "load_checkpoint",
    "load_model",
    "load_parameters",
    "save_model",
    "save_parameters",
]

PathLike = str | os.PathLike

#: The file format version this xpnn writes and the newest it reads.
FORMAT_VERSION = 1
FORMAT = "xpnn"


_DTYPES = ("float32", "float64")
_PARAM_NAME = re.compile(r"params\.(0|[1-9][0-9]{0,8})\.([A-Za-z_][A-Za-z0-9_]*)")
_VERSION = re.compile(r"[0-9]{1,9}")
_BIG = 2**128  # bound of PCG64's state words


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


class _Invalid(Exception):
    """A problem found while reading; turned into XpnnFileError with the path."""


# -- saving -------------------------------------------------------------------------------------


def save_model(
    model: Model, path: PathLike, *, checkpoint: Mapping[str, Any] | None = None
) -> None:
    """Save ``model`` (architecture and parameters) to ``path``, atomically.

    With ``checkpoint`` (a JSON-serializable dict, e.g. ``{"epoch": 12}``; ``{}`` will do) the
    training state is saved too, so that a model loaded from the file and trained N more epochs
    ends exactly where the saved one would have: the optimizer's step count, rate and state
    buffers, the model's shuffling generator, each Dropout's mask seed and count of masks
    drawn (``Dropout.random_state``) and the epoch count ``model.epochs_trained``.
    ``load_checkpoint`` returns the dict back. Saving changes nothing in the model.

    A model stopped by Ctrl-C inside an epoch saves where it stopped too, so that ``train``
    on the loaded model finishes that epoch as the saving one would.

    Raises ValueError before ``finalize()``, TypeError for a layer or object that is not one
    of xpnn's own classes, ValueError for non-finite parameters or a bad ``checkpoint``,
    ValueError (before anything is done) if ``path`` is a directory, a FIFO, a device or
    anything else but a regular file, also through a symlink, and an OSError naming ``path``
    and the cause (PermissionError, ENOSPC, ...) if the file cannot be written: the previous
    file at ``path``, if any, is then intact and no temporary file is left.
    """
    _require_model(model, "save_model")
    save_target(path)  # a refused path before anything
    spec = describe_model(model)
    tensors = _parameter_tensors(model)
    metadata = {"kind": "model", "model": _dumps(spec)}
    if checkpoint is not None:
        state, state_tensors = _training_state(model, checkpoint)
        metadata["state"] = _dumps(state)
        tensors.update(state_tensors)
    write_atomic(path, _serialize(tensors, metadata))


def save_parameters(model: Model, path: PathLike) -> None:
    """Save the parameters alone to ``path``, atomically (the book's ``save_parameters``).

    Load them into a model of the same shapes with ``load_parameters``. ``path`` and errors as
    for ``save_model``.
    """
    _require_model(model, "save_parameters")
    save_target(path)
    write_atomic(path, _serialize(_parameter_tensors(model), {"kind": "parameters"}))


def _require_model(model: Any, what: str) -> None:
    if not all(hasattr(model, a) for a in ("layers", "get_parameters", "set_parameters")):
        raise TypeError(f"{what} takes an xpnn Model; got {type(model).__name__}")
    if getattr(model, "_parameters", None) is None:
        raise ValueError(f"call finalize() before {what}()")


def _parameter_tensors(model: Model) -> dict[str, np.ndarray]:
    trainable = [layer for layer in model.layers if layer.parameter_names]
    tensors = {}
    for k, (layer, values) in enumerate(zip(trainable, model.get_parameters())):
        for (_, name, _), value in zip(layer.parameter_names, values):
            tensors[f"params.{k}.{name}"] = value
    return tensors


def _training_state(
    model: Model, checkpoint: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The JSON state and the state tensors that make training resume exactly."""
    # What a file could not load back is refused before anything.
    epochs = check_count(getattr(model, "epochs_trained", 0), "epochs_trained")
    info = checkpoint_info(checkpoint)
    if "epoch" in info:
        _check_epoch(info["epoch"], TypeError, ValueError)
    tensors = {}
    optimizer = None
    if model.optimizer is not None:
        iterations = check_count(model.optimizer.iterations, "optimizer.iterations")
        optimizer = {
            "iterations": iterations,
            "current_learning_rate": float(model.optimizer.current_learning_rate),
        }
        buffer = model._parameters
        for prefix, params, _ in buffer.trainable_parameters():
            for suffix in model.optimizer.state_names:
                value = getattr(buffer, f"{prefix}_{suffix}", None)
                if value is not None and tuple(value.shape) == tuple(params.shape):
                    tensors[f"optimizer.{prefix}_{suffix}"] = to_numpy(value)
            if iterations or tensors:  # a state not made yet (a model finalized again): zeros
                for suffix in model.optimizer.kept_states():  # as the next step makes it
                    zeros = np.zeros(tuple(params.shape), model.backend.dtype_name)
                    tensors.setdefault(f"optimizer.{prefix}_{suffix}", zeros)

    rng_state = model.rng.bit_generator.state
    _check_pcg64(rng_state, "model.rng", TypeError)
    dropout = {}
    for index, layer in enumerate(model.layers):
        if layer.draws_random:
            dropout[str(index)] = layer.random_state()
    state = {"checkpoint": info, "optimizer": optimizer, "rng": rng_state, "dropout": dropout}
    state["epochs_trained"] = epochs  # numbers the epochs (History, reports) of later runs
    progress = getattr(model, "_epoch_in_progress", None)
    if progress is not None:  # stopped inside an epoch: where, in which order, its sums so far
        loss_sum = float(to_numpy(progress.loss_sum))
        if not math.isfinite(loss_sum):
            raise ValueError("the epoch in progress has a NaN or infinite loss: it cannot be saved")
        state["epoch_in_progress"] = {
            "samples": int(progress.samples),
            "done": int(progress.done),
            "steps": int(progress.steps),
            "loss_sum": loss_sum,
            "correct": int(to_numpy(progress.correct)),
            "compared": int(progress.compared),
            "shuffled": progress.order is not None,
        }
        if progress.order is not None:
            tensors[_ORDER] = np.asarray(progress.order, dtype=np.int64)
    return state, tensors


def _dumps(value: Any) -> str:
    return json.dumps(value, allow_nan=False, sort_keys=True, separators=(",", ":"))


def _serialize(tensors: Mapping[str, Any], metadata: Mapping[str, str]) -> bytes:
    """The file's bytes: contiguous little-endian host tensors, metadata and its checksum."""
    host = {}
    for name, value in tensors.items():
        array = np.asarray(to_numpy(value))
        if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
            raise ValueError(f"{name} holds NaN or infinity: such a model cannot be saved")
        # safetensors writes wrong values for non-contiguous arrays: always pass a dense copy.
        host[name] = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    metadata = {"format": FORMAT, "version": str(FORMAT_VERSION), **metadata}
    metadata["sha256"] = _digest(metadata, host)
    data = safetensors.numpy.save(host, metadata=metadata)
    length = int.from_bytes(data[:8], "little")
    if length > MAX_HEADER_BYTES:  # never write a file that loading would refuse
        raise ValueError(
            f"the model cannot be saved: its description (architecture, training state, "
            f"tensor table) takes {length} bytes, more than the {MAX_HEADER_BYTES} an xpnn "
            f"file may have (some 80,000 layers)"
        )
    return data


def _digest(metadata: Mapping[str, str], tensors: Mapping[str, np.ndarray]) -> str:
    """SHA-256 over every metadata entry (but itself) and every tensor's name, type and bytes."""
    checksum = _Checksum(metadata)
    for name in sorted(tensors):
        array = tensors[name]
        array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
        checksum.tensor(name, array.dtype, array.shape, array.nbytes)
        checksum.update(memoryview(array.reshape(-1).view(np.uint8)))
    return checksum.hexdigest()


class _Checksum:
    """The SHA-256 that ``_digest`` computes, fed a piece at a time while a file is read."""

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


# -- loading ------------------------------------------------------------------------------------

#: The largest header a file may declare: its tensor table and the JSON of the architecture and
#: training state. A Dense layer with its activation takes some 400 bytes of it, so 16 MiB holds
#: some 80,000 layers; a longer header is refused before it is read.
MAX_HEADER_BYTES = 16 * 2**20
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
_BUFFER = "param"  # the ParameterBuffer's prefix of the optimizer's state buffers
_ORDER = "state.epoch_order"  # the sample order of the epoch in progress
_PROGRESS_KEYS = {"samples", "done", "steps", "loss_sum", "correct", "compared", "shuffled"}


class _Tensor(NamedTuple):
    """A tensor as the header declares it: its type, its shape, its bytes in the data region."""

    dtype: np.dtype
    type_name: str  # the dtype's NumPy name, which np.dtype.name computes slowly
    shape: tuple[int, ...]
    begin: int
    end: int


class _Want(NamedTuple):
    """What a tensor must be: one of ``dtypes`` (NumPy names) and ``shape``; and if required."""

    dtypes: tuple[str, ...]
    shape: tuple[int, ...]
    required: bool = True


class _Opened(NamedTuple):
    """A regular file, open, with its header read and checked; nothing else read yet."""

    file: BinaryIO
    metadata: dict[str, str]
    tensors: dict[str, _Tensor]
    data_start: int


class _Plan(NamedTuple):
    """A model file's architecture and training state, checked, with the tensors they need."""

    dtype: str
    seed: int | None
    layers: list[tuple[type, dict[str, Any]]]
    loss: tuple[type, dict[str, Any]]
    optimizer: tuple[type, dict[str, Any]] | None
    accuracy: tuple[type, dict[str, Any]] | None
    state: dict[str, Any] | None


def load_model(
    model_class: type[Model],
    path: PathLike,
    backend: str | Backend | None = None,
    dtype: Any = None,
) -> Model:
    """The model saved at ``path``, built by ``model_class`` (``Model.load`` passes itself),
    finalized, on ``backend`` (None: NumPy) in ``dtype`` (None: the saved one).

    A file saved on any backend loads on any other. A checkpoint's training state is restored
    too (see ``load_checkpoint`` for its ``checkpoint`` dict). Raises XpnnFileError if anything
    in the file is wrong; ValueError, ImportError or RuntimeError for ``backend`` or ``dtype``
    as ``Model`` does.
    """
    return load_checkpoint(model_class, path, backend, dtype)[0]


def load_checkpoint(
    model_class: type[Model],
    path: PathLike,
    backend: str | Backend | None = None,
    dtype: Any = None,
) -> tuple[Model, dict[str, Any] | None]:
    """Like ``load_model``, and also the ``checkpoint`` dict saved with it (None if none was).

    Training the returned model N more epochs ends exactly where the saved model would have
    after N more epochs (bit for bit on the same backend, NumPy at least).
    """
    path = file_name(path)
    get_backend("numpy" if backend is None else backend, dtype)  # argument errors first
    with _reading(path), _opened(path) as opened:
        kind = opened.metadata.get("kind")
        if kind == "parameters":
            raise _Invalid(
                "it holds parameters only (save_parameters); build the model and call "
                "load_parameters(model, path)"
            )
        _expect(kind == "model", f"unknown kind {kind!r:.80}")
        plan = _plan_model(opened.metadata, opened.tensors)
        tensors = _read_tensors(opened, opened.tensors)
        loaded = _build_model(model_class, plan, tensors, backend, dtype)
    return loaded


def load_parameters(model: Model, path: PathLike) -> None:
    """Replace ``model``'s parameters with those saved at ``path`` (the book's name).

    ``path`` is a ``save_parameters`` or a ``save_model`` file. The count and every shape are
    checked against the model before anything changes; on any problem XpnnFileError is raised
    and the model is untouched.
    """
    _require_model(model, "load_parameters")
    path = file_name(path)
    with _reading(path), _opened(path) as opened:
        kind = opened.metadata.get("kind")
        _expect(kind in ("parameters", "model"), f"unknown kind {kind!r:.80}")
        if kind == "model":  # its other tensors are checked against its own architecture
            _plan_model(opened.metadata, opened.tensors)
        groups: dict[int, set[str]] = {}
        for name in opened.tensors:
            match = _PARAM_NAME.fullmatch(name)
            if match is None:
                _expect(kind == "model", f"unexpected {name!r:.80}")
                continue
            groups.setdefault(int(match[1]), set()).add(match[2])
        trainable = [layer for layer in model.layers if layer.parameter_names]
        _expect(
            sorted(groups) == list(range(len(trainable))),
            f"it holds parameters for {len(groups)} layers, but the model has "
            f"{len(trainable)} layers with parameters",
        )
        wanted = {}
        for k, layer in enumerate(trainable):
            names = [name for _, name, _ in layer.parameter_names]
            _expect(
                groups[k] == set(names),
                f"layer {k} with parameters ({layer!r}) needs {names}; the file has "
                f"{sorted(groups[k])}",
            )
            for name in names:
                wanted[f"params.{k}.{name}"] = _Want(_DTYPES, tuple(getattr(layer, name).shape))
        _check_declared(opened.tensors, wanted)
        arrays = _read_tensors(opened, wanted)
        _check_finite(arrays, model.backend.dtype_name)
        model.set_parameters(
            [
                tuple(arrays[f"params.{k}.{name}"] for _, name, _ in layer.parameter_names)
                for k, layer in enumerate(trainable)
            ]
        )


@contextlib.contextmanager
def _reading(path: PathLike) -> Iterator[None]:
    """Turn every problem met while reading ``path`` into one XpnnFileError naming it."""
    try:
        yield
    except XpnnFileError:
        raise
    except _Invalid as error:
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


def _expect(condition: bool, problem: str) -> None:
    if not condition:
        raise _Invalid(problem)


@contextlib.contextmanager
def _opened(path: str | bytes) -> Iterator[_Opened]:
    """The regular file at ``path`` (symlinks followed), open, and its checked header.

    Anything else (a directory, a FIFO, a device) is refused from ``os.stat`` alone, unopened.
    """
    try:
        mode = os.stat(path).st_mode
    except ValueError as error:  # a NUL in the name
        raise _Invalid(f"its name is not a file name ({error})") from None
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
        raise _Invalid(f"it is a symlink to {target}, which is {kind}, not a regular file")
    raise _Invalid(f"it is {kind}, not a regular file")


def _read_into(file: BinaryIO, buffer: memoryview) -> None:
    done = 0
    while done < len(buffer):
        count = file.readinto(buffer[done:])
        _expect(bool(count), "it is truncated: it became shorter while it was read")
        done += count


def _read_header(file: BinaryIO, size: int) -> _Opened:
    """Read and check the safetensors header: a little-endian u64 length, then that much JSON
    (the tensor table and ``__metadata__``). Nothing beyond it is read."""
    invalid = "it is not a valid safetensors file (empty, truncated or another format)"
    _expect(size >= 8, f"{invalid}: it holds {size} bytes, fewer than the header's 8")
    prefix = bytearray(8)
    _read_into(file, memoryview(prefix))
    length = int.from_bytes(prefix, "little")
    _expect(
        length <= MAX_HEADER_BYTES,
        f"{invalid}: its header would take {length} bytes, more than the {MAX_HEADER_BYTES} "
        f"an xpnn file may have",
    )
    _expect(
        8 + length <= size,
        f"{invalid}: its header would take {length} bytes, but only {size - 8} follow",
    )
    raw = bytearray(length)
    _read_into(file, memoryview(raw))
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys("its header"))
    except (ValueError, RecursionError) as error:
        raise _Invalid(f"{invalid}: its header is not JSON ({error!s:.100})") from None
    del raw
    _expect(isinstance(header, dict), f"{invalid}: its header is not a JSON object")
    metadata = header.pop("__metadata__", None)
    _expect(
        isinstance(metadata, dict) and metadata.get("format") == FORMAT,
        "it is a safetensors file but not one xpnn wrote (its metadata has no format 'xpnn')",
    )
    _expect(all(isinstance(v, str) for v in metadata.values()), "its metadata is not text")
    version = metadata.get("version")
    _expect(
        isinstance(version, str) and _VERSION.fullmatch(version) is not None,
        f"its format version {version!r:.80} is not a number",
    )
    _expect(
        int(version) <= FORMAT_VERSION,
        f"it was written in format version {version}, newer than this xpnn reads "
        f"({FORMAT_VERSION}): upgrade xpnn",
    )
    _expect(int(version) >= 1, f"its format version {version} does not exist")
    tensors = {name: _declared(name, entry) for name, entry in header.items()}
    # The tensors' bytes lie end to end, in any order, and fill the rest of the file.
    position, available = 0, size - 8 - length
    for begin, end, name in sorted((t.begin, t.end, name) for name, t in tensors.items()):
        _expect(
            begin == position,
            f"it is damaged or not a valid safetensors file: tensor {name!r:.80} starts at byte "
            f"{begin} of the data, not at {position} where the previous one ends",
        )
        position = end
    _expect(
        position <= available,
        f"it is truncated: its tensors take {position} bytes after the header, but only "
        f"{available} follow",
    )
    _expect(
        position == available,
        f"it is damaged: {available - position} bytes follow its last tensor",
    )
    return _Opened(file, metadata, tensors, 8 + length)


def _unique_keys(where: str) -> Callable[[list[tuple[str, Any]]], dict[str, Any]]:
    """A ``json.loads`` hook that refuses a key named twice in one object of ``where``: the
    last would win, unseen by a reader that takes the first."""

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result = dict(pairs)
        if len(result) != len(pairs):
            seen: set[str] = set()
            twice = next(key for key, _ in pairs if key in seen or seen.add(key))
            raise _Invalid(f"{where} names the key {twice!r:.80} twice in one object")
        return result

    return unique


def _declared(name: str, entry: Any) -> _Tensor:
    """One entry of the tensor table, checked: a type xpnn writes, a shape, a byte range."""
    what = f"tensor {name!r:.80}"
    _expect(
        isinstance(entry, dict) and set(entry) == {"dtype", "shape", "data_offsets"},
        f"its header's entry for {what} is not a tensor's",
    )
    code, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not (isinstance(code, str) and code in _TENSOR_TYPES):
        named = _OTHER_TYPES.get(code, f"{code!r:.20}") if isinstance(code, str) else "?"
        raise _Invalid(
            f"{what} has dtype {named}: an xpnn file holds float32, float64 and int64 tensors only"
        )
    _expect(
        isinstance(shape, list)
        and len(shape) <= _MAX_RANK
        and all(type(n) is int and n >= 0 for n in shape),
        f"{what} has an invalid shape {shape!r:.80}",
    )
    _expect(
        isinstance(offsets, list)
        and len(offsets) == 2
        and all(type(n) is int for n in offsets)
        and 0 <= offsets[0] <= offsets[1],
        f"{what} has invalid data offsets {offsets!r:.80}",
    )
    dtype = _TENSOR_TYPES[code]
    size = math.prod(shape) * dtype.itemsize
    _expect(
        offsets[1] - offsets[0] == size,
        f"{what} is {code}{shape}, {size} bytes, but its data offsets span "
        f"{offsets[1] - offsets[0]} bytes",
    )
    return _Tensor(dtype, _TENSOR_NAMES[code], tuple(shape), offsets[0], offsets[1])


def _check_declared(declared: Mapping[str, _Tensor], wanted: Mapping[str, _Want]) -> None:
    """Every wanted tensor is declared (if required) with a wanted type and shape."""
    for name, want in wanted.items():
        tensor = declared.get(name)
        if tensor is None:
            _expect(not want.required, f"tensor {name!r} is missing")
            continue
        _expect(
            tensor.type_name in want.dtypes,
            f"tensor {name!r} has dtype {tensor.type_name}, not {' or '.join(want.dtypes)}",
        )
        _expect(
            tensor.shape == want.shape,
            f"tensor {name!r} has shape {tensor.shape}, but the model needs {want.shape}",
        )


def _read_tensors(opened: _Opened, keep: Collection[str]) -> dict[str, np.ndarray]:
    """The tensors named in ``keep``, read; every tensor's bytes go through the SHA-256 check.

    Call it once every declared tensor has been checked: it allocates what they declare. The
    others are read in chunks of ``_CHUNK`` bytes, hashed and dropped.
    """
    checksum = _Checksum(opened.metadata)
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
    _expect(
        opened.metadata.get("sha256") == checksum.hexdigest(),
        "it is corrupted: its contents do not match their SHA-256 checksum",
    )
    return arrays


def _check_finite(arrays: Mapping[str, np.ndarray], into: str) -> None:
    """Every float tensor finite as saved, and in ``into``, the dtype it is loaded in."""
    for name, array in arrays.items():
        if array.dtype.kind == "f":
            _expect(bool(np.all(np.isfinite(array))), f"tensor {name!r} holds NaN or infinity")
            if array.dtype.name != into:
                with np.errstate(over="ignore"):
                    fits = bool(np.all(np.isfinite(array.astype(into))))
                _expect(
                    fits, f"tensor {name!r} holds values beyond {into}'s range, the model's dtype"
                )


def _loads(metadata: dict[str, str], key: str) -> dict[str, Any]:
    _expect(key in metadata, f"its metadata has no {key!r} entry")
    try:
        value = json.loads(metadata[key], object_pairs_hook=_unique_keys(f"its {key!r} metadata"))
    except (ValueError, RecursionError) as error:
        raise _Invalid(f"its {key!r} metadata is not valid JSON ({error})") from None
    _expect(isinstance(value, dict), f"its {key!r} metadata is not a JSON object")
    return value


def _keys(value: Any, keys: set[str], what: str) -> dict[str, Any]:
    _expect(isinstance(value, dict), f"{what} must be a JSON object; got {value!r:.80}")
    _expect(
        set(value) == keys, f"{what} must have the keys {sorted(keys)}; got {sorted(value)!r:.200}"
    )
    return value


def _entry(value: Any, kinds: dict[str, type], what: str) -> tuple[type, dict[str, Any]]:
    """The whitelisted class and checked settings of one ``{"class", "settings"}`` entry."""
    value = _keys(value, {"class", "settings"}, what)
    name, settings = value["class"], value["settings"]
    _expect(
        isinstance(name, str) and name in kinds,
        f"{what} has unknown class {name!r:.80}; expected one of {', '.join(sorted(kinds))}",
    )
    cls = kinds[name]
    _expect(isinstance(settings, dict), f"{what} {name}: settings must be a JSON object")
    arguments = cls.arguments()
    unknown = sorted(set(settings) - set(arguments))
    _expect(not unknown, f"{what} {name} has unknown settings {unknown}")
    missing = sorted(a for a, required in arguments.items() if required and a not in settings)
    _expect(not missing, f"{what} {name} lacks the settings {missing}")
    for argument, setting in settings.items():
        _expect(
            setting is None or isinstance(setting, (bool, int, float, str)),
            f"{what} {name}: {argument} must be a number; got {setting!r:.80}",
        )
    return cls, settings


def _construct(cls: type, settings: dict[str, Any], what: str) -> Any:
    try:
        return cls(**settings)
    except (TypeError, ValueError, OverflowError) as error:
        raise _Invalid(f"{what} {cls.__name__} has invalid settings: {error}") from None


def _plan_model(metadata: dict[str, str], declared: Mapping[str, _Tensor]) -> _Plan:
    """Check the architecture and the training state, and every declared tensor against them,
    before any tensor is read: a file cannot make xpnn read or allocate more than the model
    it describes, and the file holds."""
    spec = _keys(
        _loads(metadata, "model"),
        {"backend", "dtype", "seed", "layers", "loss", "optimizer", "accuracy"},
        "the architecture",
    )
    saved_dtype, seed, layers = spec["dtype"], spec["seed"], spec["layers"]
    _expect(saved_dtype in _DTYPES, f"its dtype {saved_dtype!r:.80} is not one of {_DTYPES}")
    _expect(
        seed is None or (type(seed) is int and 0 <= seed < MAX_SEED),
        f"its seed {seed!r:.80} is not a non-negative integer",
    )
    _expect(isinstance(layers, list) and layers, "its architecture has no layers")
    entries = [_entry(e, LAYERS, f"layer {i}") for i, e in enumerate(layers)]

    wanted: dict[str, _Want] = {}
    k = total = 0  # layers with parameters so far, and their parameters
    for index, (cls, settings) in enumerate(entries):
        if not cls.parameter_names:
            continue
        try:  # the shapes the layer declares for these settings, before it is built
            shapes = cls.parameter_shapes(**settings)
        except (TypeError, ValueError, OverflowError) as error:
            raise _Invalid(f"layer {index} {cls.__name__} has invalid settings: {error}") from None
        for _, name, _ in cls.parameter_names:
            wanted[f"params.{k}.{name}"] = _Want((saved_dtype,), shapes[name])
            total += math.prod(shapes[name])
        k += 1
    _check_declared(declared, wanted)  # the parameters first: the layers' own sizes
    mismatch = size_problem([(cls.__name__, cls, settings) for cls, settings in entries])
    _expect(mismatch is None, f"its architecture is inconsistent: {mismatch}")
    loss = _entry(spec["loss"], LOSSES, "the loss")
    optimizer = accuracy = None
    if spec["optimizer"] is not None:
        optimizer = _entry(spec["optimizer"], OPTIMIZERS, "the optimizer")
    if spec["accuracy"] is not None:
        accuracy = _entry(spec["accuracy"], METRICS, "the accuracy")

    state, wanted_too = None, {}  # the training state and the tensors it needs
    if "state" in metadata:
        state = _loads(metadata, "state")
        optional = {"epochs_trained", "epoch_in_progress"} & set(state)
        state = _keys(
            state, {"checkpoint", "optimizer", "rng", "dropout"} | optional, "the training state"
        )
        if optimizer is not None:
            for suffix in optimizer[0].state_names:
                wanted_too[f"optimizer.{_BUFFER}_{suffix}"] = _Want((saved_dtype,), (total,), False)
        if "epoch_in_progress" in state:
            progress = _check_progress(state["epoch_in_progress"], accuracy is not None)
            if progress["shuffled"]:
                wanted_too[_ORDER] = _Want(("int64",), (progress["samples"],))

    _check_declared(declared, wanted_too)
    wanted.update(wanted_too)
    unexpected = sorted(set(declared) - set(wanted))
    for name in unexpected:
        if name.startswith("optimizer."):
            _expect(state is not None, "it holds optimizer state but no training state")
            _expect(
                optimizer is not None,
                f"tensor {name!r:.80} is optimizer state, but the model has no optimizer",
            )
            raise _Invalid(f"tensor {name!r:.80} is not state of {optimizer[0].__name__}")
    _expect(not unexpected, f"it holds unexpected tensors {unexpected!r:.200}")
    return _Plan(saved_dtype, seed, entries, loss, optimizer, accuracy, state)


def _check_progress(progress: Any, has_accuracy: bool) -> dict[str, Any]:
    """The epoch a checkpoint stopped in: how far it got, and its sums so far."""
    progress = _keys(progress, _PROGRESS_KEYS, "the epoch in progress")
    samples, done, steps = progress["samples"], progress["done"], progress["steps"]
    correct, compared = progress["correct"], progress["compared"]
    loss_sum = progress["loss_sum"]

    def count(value: Any) -> bool:
        return type(value) is int and 0 <= value < MAX_COUNT

    _expect(
        count(samples) and count(done) and 0 < done < samples,
        f"the epoch in progress must have done 1 to samples - 1 samples; got done={done!r:.40} "
        f"of samples={samples!r:.40}",
    )
    _expect(
        count(steps) and 0 < steps <= done,
        f"the epoch in progress: steps {steps!r:.40} is not between 1 and {done}",
    )
    _expect(
        type(loss_sum) in (int, float) and math.isfinite(loss_sum),
        f"the epoch in progress: loss_sum {loss_sum!r:.40} is not a finite number",
    )
    _expect(
        count(compared) and count(correct) and correct <= compared,
        f"the epoch in progress: correct={correct!r:.40} of compared={compared!r:.40} is not "
        f"a count of right predictions",
    )
    _expect(
        has_accuracy or compared == 0,
        "the epoch in progress counts predictions, but the model has no accuracy metric",
    )
    _expect(
        type(progress["shuffled"]) is bool,
        f"the epoch in progress: shuffled {progress['shuffled']!r:.40} is not true or false",
    )
    return progress


def _build_model(
    model_class: type[Model],
    plan: _Plan,
    tensors: dict[str, np.ndarray],
    backend: str | Backend | None,
    dtype: Any,
) -> tuple[Model, dict[str, Any] | None]:
    """The model ``plan`` describes, with the parameters and state ``tensors`` hold."""
    model = model_class(
        backend="numpy" if backend is None else backend,
        seed=plan.seed,
        dtype=plan.dtype if dtype is None else dtype,
    )
    _check_finite(tensors, model.backend.dtype_name)
    for index, (cls, settings) in enumerate(plan.layers):
        model.add(_construct(cls, settings, f"layer {index}"))
    optimizer = accuracy = None
    if plan.optimizer is not None:
        optimizer = _construct(*plan.optimizer, "the optimizer")
    if plan.accuracy is not None:
        accuracy = _construct(*plan.accuracy, "the accuracy")
    model.set(loss=_construct(*plan.loss, "the loss"), optimizer=optimizer, accuracy=accuracy)
    try:
        model.finalize()
    except ValueError as error:
        raise _Invalid(f"its architecture is inconsistent: {error}") from None

    trainable = [layer for layer in model.layers if layer.parameter_names]
    parameters = []
    for k, layer in enumerate(trainable):
        names = [f"params.{k}.{name}" for _, name, _ in layer.parameter_names]
        _expect(all(name in tensors for name in names), f"layer {layer!r} cannot be loaded")
        parameters.append(tuple(tensors[name] for name in names))
    model.set_parameters(parameters)
    state = plan.state
    checkpoint = None if state is None else _restore_state(model, state, tensors)
    return model, checkpoint


def _restore_state(
    model: Model, state: dict[str, Any], tensors: dict[str, np.ndarray]
) -> dict[str, Any]:
    """Put the checkpoint's training state (keys checked) into the freshly finalized ``model``."""
    epochs = state.get("epochs_trained", 0)
    _expect(
        type(epochs) is int and 0 <= epochs < MAX_COUNT,
        f"epochs_trained {epochs!r:.80} is not a non-negative integer",
    )
    checkpoint = state["checkpoint"]
    _expect(isinstance(checkpoint, dict), "the checkpoint information is not a JSON object")
    try:  # Python's json reads NaN and Infinity; a save never writes them
        json.dumps(checkpoint, allow_nan=False)
    except ValueError:
        raise _Invalid("the checkpoint information holds NaN or infinity") from None
    if "epoch" in checkpoint:
        _check_epoch(checkpoint["epoch"], _Invalid, _Invalid)

    # Check everything first, then write.
    optimizer, saved = model.optimizer, state["optimizer"]
    buffers: dict[str, np.ndarray] = {}
    if optimizer is None:
        _expect(saved is None, "it holds optimizer state but the model has no optimizer")
    else:
        saved = _keys(saved, {"iterations", "current_learning_rate"}, "the optimizer state")
        iterations, rate = saved["iterations"], saved["current_learning_rate"]
        _expect(
            type(iterations) is int and 0 <= iterations < MAX_COUNT,
            f"the optimizer's iterations {iterations!r:.80} is not a non-negative integer",
        )
        _expect(  # a rate decayed below the smallest float is 0
            type(rate) in (int, float) and math.isfinite(rate) and rate >= 0,
            f"the optimizer's current_learning_rate {rate!r:.80} is not a positive number",
        )
        _expect(
            rate > 0 or optimizer.decay > 0,
            "the optimizer's current_learning_rate is 0, but it has no decay to make it so",
        )
        dtype = model.backend.dtype_name  # the model's, which a load may choose
        with np.errstate(over="ignore"):
            _expect(
                bool(np.isfinite(np.asarray(rate, dtype=dtype))),
                f"the optimizer's current_learning_rate {rate!r:.80} is beyond {dtype}",
            )
        allowed = {}
        for prefix, params, _ in model._parameters.trainable_parameters():
            for suffix in optimizer.state_names:
                allowed[f"optimizer.{prefix}_{suffix}"] = (f"{prefix}_{suffix}", params.shape)
        for name in sorted(n for n in tensors if n.startswith("optimizer.")):
            _expect(name in allowed, f"tensor {name!r} is not state of {type(optimizer).__name__}")
            attribute, shape = allowed[name]
            array = tensors[name]
            _expect(
                tuple(array.shape) == tuple(shape),
                f"tensor {name!r} has shape {tuple(array.shape)}, but the model needs "
                f"{tuple(shape)}",
            )
            if attribute.removeprefix(f"{_BUFFER}_") in optimizer.non_negative_states:
                _expect(bool(np.all(array >= 0)), f"tensor {name!r} holds negative values")
            array = np.array(array, dtype=dtype)  # owned, writable; checked to fit the dtype
            buffers[attribute] = array
        # Without its state an optimizer would go on from zeros: a different run.
        kept = [f"optimizer.{_BUFFER}_{suffix}" for suffix in optimizer.kept_states()]
        missing = [name for name in kept if name not in tensors]
        _expect(
            not missing or (iterations == 0 and len(missing) == len(kept)),
            f"the optimizer state tensors {missing} are missing: {type(optimizer).__name__} "
            f"keeps them from its first step, and the checkpoint is after {iterations} steps"
            if iterations
            else f"the optimizer state tensors {missing} are missing, while others are there",
        )

    _check_pcg64(state["rng"], "the model's generator state", _Invalid)
    dropout = state["dropout"]
    indices = {str(i) for i, layer in enumerate(model.layers) if layer.draws_random}
    _expect(
        isinstance(dropout, dict) and set(dropout) == indices,
        f"the Dropout generator states must be given for the layers {sorted(indices)}",
    )
    for index, entry in dropout.items():
        # {"seed", "draws"}; a file from before keyed masks: {"state"} (NumPy) or {"seed"} (CuPy).
        _expect(
            isinstance(entry, dict) and set(entry) in ({"seed", "draws"}, {"state"}, {"seed"}),
            f"the random state of layer {index} must be {{'seed': ..., 'draws': ...}} (or, "
            f"from an older file, {{'state': ...}} or {{'seed': ...}})",
        )
        if "state" in entry:
            _check_pcg64(entry["state"], f"the generator state of layer {index}", _Invalid)
        else:
            seed, draws = entry["seed"], entry.get("draws", 0)
            _expect(
                type(seed) is int and 0 <= seed < MAX_SEED,
                f"the generator seed of layer {index} is not a non-negative integer",
            )
            _expect(
                type(draws) is int and 0 <= draws < 2**63,
                f"the masks drawn by layer {index} are not a whole number in [0, 2**63)",
            )
    progress = state.get("epoch_in_progress")  # checked by _check_progress
    order = loss_sum = None
    if progress is not None:
        with np.errstate(over="ignore"):
            loss_sum = np.asarray(progress["loss_sum"], dtype=model.backend.dtype_name)
        _expect(
            bool(np.isfinite(loss_sum)),
            f"the epoch in progress: loss_sum {progress['loss_sum']!r:.40} is beyond "
            f"{model.backend.dtype_name}",
        )
        if progress["shuffled"]:
            order = tensors[_ORDER]
            _expect(_is_permutation(order), f"tensor {_ORDER!r} is not an order of the samples")

    if optimizer is not None:
        optimizer.iterations = saved["iterations"]
        optimizer.current_learning_rate = float(saved["current_learning_rate"])
        for attribute, array in buffers.items():
            setattr(model._parameters, attribute, model.backend.asarray(array))
    if "epochs_trained" in state and hasattr(model, "epochs_trained"):
        model.epochs_trained = epochs
    if progress is not None:
        backend = model.backend
        model._epoch_in_progress = EpochInProgress(
            samples=progress["samples"],
            done=progress["done"],
            steps=progress["steps"],
            order=None if order is None else np.array(order, dtype=np.int64),
            loss_sum=backend.asarray(loss_sum),
            correct=backend.asarray(np.asarray(progress["correct"]), dtype=backend.index_dtype),
            compared=progress["compared"],
        )
    # After finalize(), which drew the initial weights and Dropout seeds from this generator.
    model.rng.bit_generator.state = state["rng"]
    for index, entry in dropout.items():
        layer = model.layers[int(index)]
        layer.set_random_state(entry)
    return checkpoint


def _is_permutation(order: np.ndarray) -> bool:
    """True if ``order`` (1-D) holds each of 0, 1, ..., len(order) - 1 once."""
    n = order.shape[0]
    if n == 0 or order.min() < 0 or order.max() >= n:
        return n == 0
    seen = np.zeros(n, dtype=bool)
    seen[order] = True
    return bool(seen.all())


def _check_pcg64(state: Any, what: str, error: type[Exception]) -> None:
    """``state`` is a NumPy PCG64 ``bit_generator.state`` dict, with every value in range."""
    ok = (
        isinstance(state, dict)
        and set(state) == {"bit_generator", "state", "has_uint32", "uinteger"}
        and state["bit_generator"] == "PCG64"
        and isinstance(state["state"], dict)
        and set(state["state"]) == {"state", "inc"}
        and all(type(v) is int and 0 <= v < _BIG for v in state["state"].values())
        and state["has_uint32"] in (0, 1)
        and type(state["has_uint32"]) is int
        and type(state["uinteger"]) is int
        and 0 <= state["uinteger"] < 2**32
    )
    if not ok:
        raise error(f"{what} is not a NumPy PCG64 generator state")


def _check_epoch(epoch: Any, type_error: type[Exception], value_error: type[Exception]) -> None:
    if isinstance(epoch, bool) or not isinstance(epoch, int):
        raise type_error(f"checkpoint['epoch'] must be an integer; got {epoch!r:.80}")
    if epoch < 0:
        raise value_error(f"checkpoint['epoch'] must be >= 0; got {epoch!r}")
