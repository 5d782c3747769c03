"""Saving and loading models: safe persistence, in a format that holds no code.

A model file is one safetensors file. Its tensors are the parameters (``params.<k>.<name>``, the
k-th layer with parameters, as ``Model.get_parameters()`` orders them) and, in a checkpoint, the
optimizer's state buffers (``optimizer.<prefix>_momentums``, ``optimizer.<prefix>_cache``). Its
text metadata holds the architecture as JSON: dtype, seed, each layer, the loss, the optimizer and
the metric, by class name and constructor settings; a checkpoint adds the training state
(optimizer step count and rate, the model's shuffling generator, each Dropout generator, the
caller's ``checkpoint`` dict such as ``{"epoch": 12}``). A SHA-256 of every tensor and metadata
entry detects corruption.

Loading runs nothing from the file: class names are looked up in a fixed table of xpnn's own
classes, settings go through the constructors' own checks, and every shape, dtype and value is
checked before a model is returned. Anything wrong raises :class:`XpnnFileError` (a
``ValueError``) naming the file and the problem.

Writes are atomic: the bytes go to a temporary file beside the target, are flushed to disk, and
replace the target in one ``os.replace``; a crash at any moment leaves the old file or the new
one, never a mixture (a killed process may leave its ``.<name>.<random>.tmp`` file behind).
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import math
import os
import re
import secrets
import stat
from collections.abc import Iterator, Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np
import safetensors.numpy
from safetensors import SafetensorError

from . import model as _model_module
from .activations import LeakyReLU, Linear, ReLU, Sigmoid, Softmax, Tanh
from .backend import Backend, get_backend, to_numpy
from .layers import Dense, Dropout
from .losses import BinaryCrossentropy, CategoricalCrossentropy, MeanAbsoluteError, MeanSquaredError
from .metrics import CategoricalAccuracy, RegressionAccuracy
from .optimizers import SGD, Adagrad, Adam, RMSprop

if TYPE_CHECKING:
    from .model import Model

__all__ = [
    "FORMAT_VERSION",
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

# The only classes a file may name: nothing else is ever looked up or called.
_LAYERS = {c.__name__: c for c in (Dense, Dropout, ReLU, Softmax, Sigmoid, Linear, Tanh, LeakyReLU)}
_LOSSES = {
    c.__name__: c
    for c in (CategoricalCrossentropy, BinaryCrossentropy, MeanSquaredError, MeanAbsoluteError)
}
_OPTIMIZERS = {c.__name__: c for c in (SGD, Adagrad, RMSprop, Adam)}
_METRICS = {c.__name__: c for c in (CategoricalAccuracy, RegressionAccuracy)}
# Constructor arguments that place an object rather than describe it.
_PLACEMENT = frozenset({"self", "backend", "dtype", "seed"})
# The optimizer state buffers each optimizer keeps (the book's ``<prefix>_<suffix>`` names).
_OPTIMIZER_STATES = {
    "Adam": ("momentums", "cache"),
    "SGD": ("momentums",),
    "Adagrad": ("cache",),
    "RMSprop": ("cache",),
}
_CACHE_SUFFIX = "cache"  # sums or averages of squared gradients: never negative
_DTYPES = ("float32", "float64")
_PARAM_NAME = re.compile(r"params\.(0|[1-9][0-9]{0,8})\.([A-Za-z_][A-Za-z0-9_]*)")
_VERSION = re.compile(r"[0-9]{1,9}")
_BIG = 2**128  # bound of PCG64's state words
_MAX_SEED = 2**512


class XpnnFileError(ValueError):
    """A file that cannot be loaded: missing, unreadable, truncated, corrupted, tampered with,
    another format, a newer format version, or contents that do not fit the model.

    ``path`` is the file and ``problem`` what is wrong with it; the message names both.
    """

    def __init__(self, path: Any, problem: str) -> None:
        self.path = _shown(path)
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
    buffers, the model's shuffling generator, each Dropout generator and the epoch count
    ``model.epochs_trained``. ``load_checkpoint``
    returns the dict back. On CuPy, whose generators' state cannot be read, each Dropout
    generator is replaced by a fresh one seeded from its own draws, and that seed is saved, so
    the saving model and the loaded one go on with the same masks.

    Raises ValueError before ``finalize()``, TypeError for a layer or object that is not one
    of xpnn's own classes, ValueError for non-finite parameters or a bad ``checkpoint``, OSError
    if the file cannot be written (the previous file at ``path``, if any, is then intact).
    """
    _require_model(model, "save_model")
    spec = _describe_model(model)
    tensors = _parameter_tensors(model)
    metadata = {"kind": "model", "model": _dumps(spec)}
    if checkpoint is not None:
        state, state_tensors = _training_state(model, checkpoint)
        metadata["state"] = _dumps(state)
        tensors.update(state_tensors)
    _write_atomic(path, _serialize(tensors, metadata))


def save_parameters(model: Model, path: PathLike) -> None:
    """Save the parameters alone to ``path``, atomically (the book's ``save_parameters``).

    Load them into a model of the same shapes with ``load_parameters``.
    """
    _require_model(model, "save_parameters")
    _write_atomic(path, _serialize(_parameter_tensors(model), {"kind": "parameters"}))


def _require_model(model: Any, what: str) -> None:
    if not isinstance(model, _model_module.Model):
        raise TypeError(f"{what} takes an xpnn Model; got {type(model).__name__}")
    if getattr(model, "_parameters", None) is None:
        raise ValueError(f"call finalize() before {what}()")


def _describe_model(model: Model) -> dict[str, Any]:
    seed = model.seed
    if isinstance(seed, np.integer):
        seed = int(seed)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise TypeError(f"only a model seeded with an int (or None) can be saved; seed={seed!r}")
    return {
        "backend": model.backend.name,  # informational: a file loads on any backend
        "dtype": model.backend.dtype_name,
        "seed": seed,
        "layers": [_describe(layer, _LAYERS, "layer") for layer in model.layers],
        "loss": _describe(model.loss, _LOSSES, "loss"),
        "optimizer": _describe(model.optimizer, _OPTIMIZERS, "optimizer"),
        "accuracy": _describe(model.accuracy, _METRICS, "accuracy"),
    }


def _describe(obj: Any, kinds: dict[str, type], what: str) -> dict[str, Any] | None:
    """``{"class": name, "settings": {argument: value}}`` from the constructor's arguments."""
    if obj is None:
        return None
    name = type(obj).__name__
    if kinds.get(name) is not type(obj):
        raise TypeError(
            f"cannot save {what} {obj!r}: only xpnn's own classes can be saved "
            f"({', '.join(sorted(kinds))})"
        )
    settings = {}
    for argument in _arguments(type(obj)):
        value = getattr(obj, argument, None)
        if isinstance(value, np.generic):
            value = value.item()
        if value is not None and not isinstance(value, (bool, int, float, str)):
            raise TypeError(f"cannot save {what} {name}: {argument}={value!r} is not a number")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"cannot save {what} {name}: {argument}={value!r} is not finite")
        settings[argument] = value
    return {"class": name, "settings": settings}


@cache
def _arguments(cls: type) -> dict[str, bool]:
    """The constructor's settings (not placement), each mapped to whether it is required."""
    parameters = inspect.signature(cls.__init__).parameters.values()
    return {
        p.name: p.default is inspect.Parameter.empty
        for p in parameters
        if p.name not in _PLACEMENT
        and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }


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
    if not isinstance(checkpoint, Mapping):
        raise TypeError(f"checkpoint must be a dict such as {{'epoch': 12}}; got {checkpoint!r}")
    info = dict(checkpoint)
    try:
        json.dumps(info, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise TypeError(f"checkpoint must be JSON-serializable: {error}") from error
    if not all(isinstance(key, str) for key in info):
        raise TypeError("checkpoint keys must be strings")
    if "epoch" in info:
        _check_epoch(info["epoch"], TypeError, ValueError)

    tensors = {}
    optimizer = None
    if model.optimizer is not None:
        optimizer = {
            "iterations": int(model.optimizer.iterations),
            "current_learning_rate": float(model.optimizer.current_learning_rate),
        }
        buffer = model._parameters
        for prefix, params, _ in buffer.trainable_parameters():
            for suffix in _OPTIMIZER_STATES[type(model.optimizer).__name__]:
                value = getattr(buffer, f"{prefix}_{suffix}", None)
                if value is not None and tuple(value.shape) == tuple(params.shape):
                    tensors[f"optimizer.{prefix}_{suffix}"] = to_numpy(value)

    rng_state = model.rng.bit_generator.state
    _check_pcg64(rng_state, "model.rng", TypeError)
    dropout = {}
    for index, layer in enumerate(model.layers):
        if isinstance(layer, Dropout):
            dropout[str(index)] = _generator_state(model.backend, layer)
    state = {"checkpoint": info, "optimizer": optimizer, "rng": rng_state, "dropout": dropout}
    if hasattr(model, "epochs_trained"):  # numbers the epochs (History, reports) of later runs
        state["epochs_trained"] = int(model.epochs_trained)
    return state, tensors


def _generator_state(backend: Backend, layer: Dropout) -> dict[str, Any]:
    generator = layer.generator
    if isinstance(generator, np.random.Generator):
        state = generator.bit_generator.state
        if state.get("bit_generator") == "PCG64":
            return {"state": state}
    # A device generator (CuPy's) keeps its state on the device, out of reach: continue from a
    # fresh generator seeded by its own draws, and save that seed.
    draws = np.ascontiguousarray(to_numpy(backend.random(generator, (8,))))
    seed = int.from_bytes(draws.tobytes(), "little") % _MAX_SEED
    layer.generator = backend.random_generator(seed)
    return {"seed": seed}


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
    return safetensors.numpy.save(host, metadata=metadata)


def _digest(metadata: Mapping[str, str], tensors: Mapping[str, np.ndarray]) -> str:
    """SHA-256 over every metadata entry (but itself) and every tensor's name, type and bytes."""
    h = hashlib.sha256()

    def feed(data: bytes) -> None:
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)

    for key in sorted(metadata):
        if key != "sha256":
            feed(key.encode("utf-8", "surrogatepass"))
            feed(metadata[key].encode("utf-8", "surrogatepass"))
    for name in sorted(tensors):
        array = tensors[name]
        feed(name.encode("utf-8", "surrogatepass"))
        feed(f"{array.dtype.newbyteorder('<').str}{list(array.shape)}".encode())
        feed(np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes())
    return h.hexdigest()


def _write_atomic(path: PathLike, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, sync it, then rename it onto ``path``."""
    # Through a symlink: replace the file it points to, not the link.
    target = os.fsdecode(os.path.realpath(_path(path)))
    directory, name = os.path.split(target)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        temporary = os.path.join(directory, f".{name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(temporary, flags, 0o666)  # the umask applies, as for any new file
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as file:
            with contextlib.suppress(OSError):  # keep the permissions of a file we replace
                os.chmod(file.fileno(), stat.S_IMODE(os.stat(target).st_mode))
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _fsync_directory(directory)


def _fsync_directory(directory: str) -> None:
    """Make the rename durable where the platform allows syncing a directory."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# -- loading ------------------------------------------------------------------------------------


def load_model(path: PathLike, backend: str | Backend | None = None, dtype: Any = None) -> Model:
    """The model saved at ``path``, finalized, on ``backend`` (None: NumPy) in ``dtype`` (None: the
    saved one).

    A file saved on any backend loads on any other. A checkpoint's training state is restored
    too (see ``load_checkpoint`` for its ``checkpoint`` dict). Raises XpnnFileError if anything
    in the file is wrong; ValueError, ImportError or RuntimeError for ``backend`` or ``dtype``
    as ``Model`` does.
    """
    return load_checkpoint(path, backend, dtype)[0]


def load_checkpoint(
    path: PathLike, backend: str | Backend | None = None, dtype: Any = None
) -> tuple[Model, dict[str, Any] | None]:
    """Like ``load_model``, and also the ``checkpoint`` dict saved with it (None if none was).

    Training the returned model N more epochs ends exactly where the saved model would have
    after N more epochs (bit for bit on the same backend, NumPy at least).
    """
    path = _path(path)
    get_backend("numpy" if backend is None else backend, dtype)  # argument errors first
    with _reading(path):
        metadata, tensors = _read(path)
        if metadata.get("kind") == "parameters":
            raise _Invalid(
                "it holds parameters only (save_parameters); build the model and call "
                "load_parameters(model, path)"
            )
        _expect(metadata.get("kind") == "model", f"unknown kind {metadata.get('kind')!r}")
        spec = _loads(metadata, "model")
        state = _loads(metadata, "state") if "state" in metadata else None
        loaded = _build_model(spec, state, tensors, backend, dtype)
    return loaded


def load_parameters(model: Model, path: PathLike) -> None:
    """Replace ``model``'s parameters with those saved at ``path`` (the book's name).

    ``path`` is a ``save_parameters`` or a ``save_model`` file. The count and every shape are
    checked against the model before anything changes; on any problem XpnnFileError is raised
    and the model is untouched.
    """
    _require_model(model, "load_parameters")
    path = _path(path)
    with _reading(path):
        metadata, tensors = _read(path)
        kind = metadata.get("kind")
        _expect(kind in ("parameters", "model"), f"unknown kind {kind!r}")
        groups: dict[int, dict[str, np.ndarray]] = {}
        for name, array in tensors.items():
            match = _PARAM_NAME.fullmatch(name)
            if match is None:
                _expect(kind == "model" and name.startswith("optimizer."), f"unexpected {name!r}")
                continue
            groups.setdefault(int(match[1]), {})[match[2]] = array
        trainable = [layer for layer in model.layers if layer.parameter_names]
        _expect(
            sorted(groups) == list(range(len(trainable))),
            f"it holds parameters for {len(groups)} layers, but the model has "
            f"{len(trainable)} layers with parameters",
        )
        current = model.get_parameters()
        parameters = []
        for k, (layer, values) in enumerate(zip(trainable, current)):
            names = [name for _, name, _ in layer.parameter_names]
            _expect(
                sorted(groups[k]) == sorted(names),
                f"layer {k} with parameters ({layer!r}) needs {names}; the file has "
                f"{sorted(groups[k])}",
            )
            for name, value in zip(names, values):
                array = groups[k][name]
                _check_tensor(
                    f"params.{k}.{name}", array, value.shape, None, model.backend.dtype_name
                )
            parameters.append(tuple(groups[k][name] for name in names))
        model.set_parameters(parameters)


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
    except (
        SafetensorError,
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


def _read(path: PathLike) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """The checked metadata and the tensors of the xpnn file at ``path``."""
    with open(path, "rb") as file:
        data = file.read()
    try:
        tensors = safetensors.numpy.load(data)
    except (SafetensorError, ValueError, TypeError, KeyError, OverflowError) as error:
        raise _Invalid(
            f"it is not a valid safetensors file (empty, truncated, corrupted or another "
            f"format): {error}"
        ) from None
    # safetensors has checked the header: 8 bytes of length, then that much JSON.
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + length].decode("utf-8"))
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    _expect(
        isinstance(metadata, dict) and metadata.get("format") == FORMAT,
        "it is a safetensors file but not one xpnn wrote (its metadata has no format 'xpnn')",
    )
    _expect(all(isinstance(v, str) for v in metadata.values()), "its metadata is not text")
    version = metadata.get("version")
    _expect(
        isinstance(version, str) and _VERSION.fullmatch(version) is not None,
        f"its format version {version!r} is not a number",
    )
    _expect(
        int(version) <= FORMAT_VERSION,
        f"it was written in format version {version}, newer than this xpnn reads "
        f"({FORMAT_VERSION}): upgrade xpnn",
    )
    _expect(int(version) >= 1, f"its format version {version} does not exist")
    _expect(
        metadata.get("sha256") == _digest(metadata, tensors),
        "it is corrupted: its contents do not match their SHA-256 checksum",
    )
    return metadata, tensors


def _loads(metadata: dict[str, str], key: str) -> dict[str, Any]:
    _expect(key in metadata, f"its metadata has no {key!r} entry")
    try:
        value = json.loads(metadata[key])
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
    arguments = _arguments(cls)
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


def _check_tensor(
    name: str, array: np.ndarray, shape: tuple[int, ...], dtype: str | None, into: str
) -> None:
    if dtype is None:
        _expect(array.dtype.name in _DTYPES, f"tensor {name!r} has dtype {array.dtype}")
    else:
        _expect(array.dtype.name == dtype, f"tensor {name!r} has dtype {array.dtype}, not {dtype}")
    _expect(
        tuple(array.shape) == tuple(shape),
        f"tensor {name!r} has shape {tuple(array.shape)}, but the model needs {tuple(shape)}",
    )
    _expect(bool(np.all(np.isfinite(array))), f"tensor {name!r} holds NaN or infinity")
    with np.errstate(over="ignore"):  # finite as saved, and in the dtype it is loaded in
        fits = array.dtype.name == into or bool(np.all(np.isfinite(array.astype(into))))
    _expect(fits, f"tensor {name!r} holds values beyond {into}'s range, the model's dtype")


def _build_model(
    spec: dict[str, Any],
    state: dict[str, Any] | None,
    tensors: dict[str, np.ndarray],
    backend: str | Backend | None,
    dtype: Any,
) -> tuple[Model, dict[str, Any] | None]:
    spec = _keys(
        spec,
        {"backend", "dtype", "seed", "layers", "loss", "optimizer", "accuracy"},
        "the architecture",
    )
    saved_dtype, seed, layers = spec["dtype"], spec["seed"], spec["layers"]
    _expect(saved_dtype in _DTYPES, f"its dtype {saved_dtype!r:.80} is not one of {_DTYPES}")
    _expect(
        seed is None or (type(seed) is int and 0 <= seed < _MAX_SEED),
        f"its seed {seed!r:.80} is not a non-negative integer",
    )
    _expect(isinstance(layers, list) and layers, "its architecture has no layers")
    entries = [_entry(e, _LAYERS, f"layer {i}") for i, e in enumerate(layers)]

    # Check the parameter tensors against the layer sizes before building anything, so that a
    # file cannot make xpnn allocate more than it holds.
    expected: dict[str, tuple[int, ...]] = {}
    for index, (cls, settings) in enumerate(entries):
        if cls is Dense:
            n_inputs, n_neurons = settings["n_inputs"], settings["n_neurons"]
            _expect(
                type(n_inputs) is int and type(n_neurons) is int,
                f"layer {index} Dense: n_inputs and n_neurons must be integers",
            )
            k = sum(1 for c, _ in entries[:index] if c.parameter_names)
            expected[f"params.{k}.weights"] = (n_inputs, n_neurons)
            expected[f"params.{k}.biases"] = (1, n_neurons)
        else:
            _expect(not cls.parameter_names, f"layer {index} {cls.__name__} cannot be loaded")
    into = saved_dtype if dtype is None else get_backend("numpy", dtype).dtype_name
    for name, shape in expected.items():
        _expect(name in tensors, f"tensor {name!r} is missing")
        _check_tensor(name, tensors[name], shape, saved_dtype, into)

    model = _model_module.Model(
        backend="numpy" if backend is None else backend,
        seed=seed,
        dtype=saved_dtype if dtype is None else dtype,
    )
    for index, (cls, settings) in enumerate(entries):
        model.add(_construct(cls, settings, f"layer {index}"))
    loss_cls, loss_settings = _entry(spec["loss"], _LOSSES, "the loss")
    optimizer = accuracy = None
    if spec["optimizer"] is not None:
        cls, settings = _entry(spec["optimizer"], _OPTIMIZERS, "the optimizer")
        optimizer = _construct(cls, settings, "the optimizer")
    if spec["accuracy"] is not None:
        cls, settings = _entry(spec["accuracy"], _METRICS, "the accuracy")
        accuracy = _construct(cls, settings, "the accuracy")
    model.set(
        loss=_construct(loss_cls, loss_settings, "the loss"),
        optimizer=optimizer,
        accuracy=accuracy,
    )
    try:
        model.finalize()
    except ValueError as error:
        raise _Invalid(f"its architecture is inconsistent: {error}") from None

    trainable = [layer for layer in model.layers if layer.parameter_names]
    parameters = []
    for k, layer in enumerate(trainable):
        names = [f"params.{k}.{name}" for _, name, _ in layer.parameter_names]
        _expect(all(name in expected for name in names), f"layer {layer!r} cannot be loaded")
        parameters.append(tuple(tensors[name] for name in names))
    state_tensors = {name for name in tensors if name.startswith("optimizer.")}
    extra = sorted(set(tensors) - set(expected) - state_tensors)
    _expect(not extra, f"it holds unexpected tensors {extra}")
    _expect(
        state is not None or not state_tensors, "it holds optimizer state but no training state"
    )
    model.set_parameters(parameters)
    checkpoint = None if state is None else _restore_state(model, state, tensors, saved_dtype)
    return model, checkpoint


def _restore_state(
    model: Model, state: dict[str, Any], tensors: dict[str, np.ndarray], saved_dtype: str
) -> dict[str, Any]:
    """Put the checkpoint's training state into the freshly finalized ``model``."""
    keys = {"checkpoint", "optimizer", "rng", "dropout"}
    state = _keys(state, keys | ({"epochs_trained"} & set(state or ())), "the training state")
    epochs = state.get("epochs_trained", 0)
    _expect(
        type(epochs) is int and 0 <= epochs < 2**63,
        f"epochs_trained {epochs!r:.80} is not a non-negative integer",
    )
    checkpoint = state["checkpoint"]
    _expect(isinstance(checkpoint, dict), "the checkpoint information is not a JSON object")
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
            type(iterations) is int and 0 <= iterations < 2**63,
            f"the optimizer's iterations {iterations!r:.80} is not a non-negative integer",
        )
        _expect(
            type(rate) in (int, float) and math.isfinite(rate) and rate > 0,
            f"the optimizer's current_learning_rate {rate!r:.80} is not a positive number",
        )
        allowed = {}
        for prefix, params, _ in model._parameters.trainable_parameters():
            for suffix in _OPTIMIZER_STATES[type(optimizer).__name__]:
                allowed[f"optimizer.{prefix}_{suffix}"] = (f"{prefix}_{suffix}", params.shape)
        for name in sorted(n for n in tensors if n.startswith("optimizer.")):
            _expect(name in allowed, f"tensor {name!r} is not state of {type(optimizer).__name__}")
            attribute, shape = allowed[name]
            _check_tensor(name, tensors[name], shape, saved_dtype, model.backend.dtype_name)
            if attribute.endswith(_CACHE_SUFFIX):
                _expect(bool(np.all(tensors[name] >= 0)), f"tensor {name!r} holds negative values")
            buffers[attribute] = tensors[name]

    _check_pcg64(state["rng"], "the model's generator state", _Invalid)
    dropout = state["dropout"]
    indices = {str(i) for i, layer in enumerate(model.layers) if isinstance(layer, Dropout)}
    _expect(
        isinstance(dropout, dict) and set(dropout) == indices,
        f"the Dropout generator states must be given for the layers {sorted(indices)}",
    )
    for index, entry in dropout.items():
        _expect(
            isinstance(entry, dict) and len(entry) == 1 and set(entry) <= {"state", "seed"},
            f"the generator of layer {index} must be {{'state': ...}} or {{'seed': ...}}",
        )
        if "state" in entry:
            _check_pcg64(entry["state"], f"the generator state of layer {index}", _Invalid)
        else:
            seed = entry["seed"]
            _expect(
                type(seed) is int and 0 <= seed < _MAX_SEED,
                f"the generator seed of layer {index} is not a non-negative integer",
            )

    if optimizer is not None:
        optimizer.iterations = saved["iterations"]
        optimizer.current_learning_rate = float(saved["current_learning_rate"])
        for attribute, array in buffers.items():
            copy = np.array(array, dtype=model.backend.dtype_name)  # owned and writable
            setattr(model._parameters, attribute, model.backend.asarray(copy))
    if "epochs_trained" in state and hasattr(model, "epochs_trained"):
        model.epochs_trained = epochs
    # After finalize(), which drew the initial weights and Dropout seeds from this generator.
    model.rng.bit_generator.state = state["rng"]
    for index, entry in dropout.items():
        layer = model.layers[int(index)]
        _set_generator(model.backend, layer, entry)
    return checkpoint


def _set_generator(backend: Backend, layer: Dropout, entry: dict[str, Any]) -> None:
    if "seed" in entry:
        layer.generator = backend.random_generator(entry["seed"])
        return
    if isinstance(layer.generator, np.random.Generator):
        layer.generator.bit_generator.state = entry["state"]
        return
    # A NumPy generator's state for a device generator: seed the latter from the former.
    host = np.random.Generator(np.random.PCG64())
    host.bit_generator.state = entry["state"]
    layer.generator = backend.random_generator(int(host.integers(2**63)))


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


def _path(path: Any) -> str | bytes:
    """``path`` as a file name; TypeError for anything else (an int would open a descriptor)."""
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError(f"path must be a file name (str or os.PathLike); got {path!r:.80}")
    return os.fspath(path)


def _shown(path: Any) -> str:
    try:
        return os.fsdecode(path)
    except TypeError:
        return repr(path)
