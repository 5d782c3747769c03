"""Model files: saving a model (architecture, parameters, training state) or its parameters
alone, and loading them back.

This module knows no Model. The shapes a file must hold come from each layer class
(``parameter_shapes``, ``widths``), and a model is built through the class ``Model.load``
passes in, with the book's API. Class names are looked up in a fixed table of xpnn's own
classes (``description``), settings go through the constructors' own checks, and every
declared tensor is checked against the architecture before any is read, so a file cannot make
xpnn read or allocate more than the model it describes. The training state a checkpoint adds is
``checkpoints.py``'s.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import numpy as np

from ..backends import Backend, get_backend
from ..building import size_problem
from ..description import (
    LAYERS,
    LOSSES,
    MAX_SEED,
    METRICS,
    OPTIMIZERS,
    describe_model,
    unknown_class,
)
from ..files import file_name, save_target, write_atomic
from . import checkpoints, reader
from .format import DTYPES, Invalid, dumps, expect, serialize
from .reader import Tensor, Want, check_declared, check_finite, check_keys, loads, reading

if TYPE_CHECKING:
    from ..building import ModelFace

__all__ = ["load_checkpoint", "load_model", "load_parameters", "save_model", "save_parameters"]

PathLike = str | os.PathLike
M = TypeVar("M", bound="ModelFace")  # the class Model.load passes: it gets its own kind back

_PARAM_NAME = re.compile(r"params\.(0|[1-9][0-9]{0,8})\.([A-Za-z_][A-Za-z0-9_]*)")


def save_model(
    model: ModelFace, path: PathLike, *, checkpoint: Mapping[str, Any] | None = None
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
    metadata = {"kind": "model", "model": dumps(spec)}
    if checkpoint is not None:
        state, state_tensors = checkpoints.training_state(model, checkpoint)
        metadata["state"] = dumps(state)
        tensors.update(state_tensors)
    write_atomic(path, serialize(tensors, metadata))


def save_parameters(model: ModelFace, path: PathLike) -> None:
    """Save the parameters alone to ``path``, atomically (the book's ``save_parameters``).

    Load them into a model of the same shapes with ``load_parameters``. ``path`` and errors as
    for ``save_model``.
    """
    _require_model(model, "save_parameters")
    save_target(path)
    write_atomic(path, serialize(_parameter_tensors(model), {"kind": "parameters"}))


def _require_model(model: Any, what: str) -> None:
    if not all(hasattr(model, a) for a in ("layers", "get_parameters", "set_parameters")):
        raise TypeError(f"{what} takes an xpnn Model; got {type(model).__name__}")
    if getattr(model, "network", None) is None:
        raise ValueError(f"call finalize() before {what}()")


def _parameter_tensors(model: ModelFace) -> dict[str, np.ndarray]:
    trainable = [layer for layer in model.layers if layer.parameter_names]
    tensors = {}
    for k, (layer, values) in enumerate(zip(trainable, model.get_parameters())):
        for (_, name, _), value in zip(layer.parameter_names, values):
            tensors[f"params.{k}.{name}"] = value
    return tensors


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
    model_class: type[M],
    path: PathLike,
    backend: str | Backend | None = None,
    dtype: Any = None,
) -> M:
    """The model saved at ``path``, built by ``model_class`` (``Model.load`` passes itself),
    finalized, on ``backend`` (None: NumPy) in ``dtype`` (None: the saved one).

    A file saved on any backend loads on any other. A checkpoint's training state is restored
    too (see ``load_checkpoint`` for its ``checkpoint`` dict). Raises XpnnFileError if anything
    in the file is wrong; ValueError, ImportError or RuntimeError for ``backend`` or ``dtype``
    as ``Model`` does.
    """
    return load_checkpoint(model_class, path, backend, dtype)[0]


def load_checkpoint(
    model_class: type[M],
    path: PathLike,
    backend: str | Backend | None = None,
    dtype: Any = None,
) -> tuple[M, dict[str, Any] | None]:
    """Like ``load_model``, and also the ``checkpoint`` dict saved with it (None if none was).

    Training the returned model N more epochs ends exactly where the saved model would have
    after N more epochs (bit for bit on the same backend, NumPy at least).
    """
    path = file_name(path)
    # argument errors first; "auto" is resolved (and its choice logged) once, by the model
    get_backend("numpy" if backend is None or backend == "auto" else backend, dtype)
    with reading(path), reader.open_file(path) as opened:
        kind = opened.metadata.get("kind")
        if kind == "parameters":
            raise Invalid(
                "it holds parameters only (save_parameters); build the model and call "
                "model.load_parameters(path)"
            )
        expect(kind == "model", f"unknown kind {kind!r:.80}")
        plan = _plan_model(opened.metadata, opened.tensors)
        tensors = reader.read_tensors(opened, opened.tensors)
        loaded = _build_model(model_class, plan, tensors, backend, dtype)
    return loaded


def load_parameters(model: ModelFace, path: PathLike) -> None:
    """Replace ``model``'s parameters with those saved at ``path`` (the book's name).

    ``path`` is a ``save_parameters`` or a ``save_model`` file. The count and every shape are
    checked against the model before anything changes; on any problem XpnnFileError is raised
    and the model is untouched.
    """
    _require_model(model, "load_parameters")
    path = file_name(path)
    with reading(path), reader.open_file(path) as opened:
        kind = opened.metadata.get("kind")
        expect(kind in ("parameters", "model"), f"unknown kind {kind!r:.80}")
        if kind == "model":  # its other tensors are checked against its own architecture
            _plan_model(opened.metadata, opened.tensors)
        groups: dict[int, set[str]] = {}
        for name in opened.tensors:
            match = _PARAM_NAME.fullmatch(name)
            if match is None:
                expect(kind == "model", f"unexpected {name!r:.80}")
                continue
            groups.setdefault(int(match[1]), set()).add(match[2])
        trainable = [layer for layer in model.layers if layer.parameter_names]
        expect(
            sorted(groups) == list(range(len(trainable))),
            f"it holds parameters for {len(groups)} layers, but the model has "
            f"{len(trainable)} layers with parameters",
        )
        wanted = {}
        for k, layer in enumerate(trainable):
            names = [name for _, name, _ in layer.parameter_names]
            expect(
                groups[k] == set(names),
                f"layer {k} with parameters ({layer!r}) needs {names}; the file has "
                f"{sorted(groups[k])}",
            )
            for name in names:
                wanted[f"params.{k}.{name}"] = Want(DTYPES, tuple(getattr(layer, name).shape))
        check_declared(opened.tensors, wanted)
        arrays = reader.read_tensors(opened, wanted)
        check_finite(arrays, model.backend.dtype_name)
        model.set_parameters(
            [
                tuple(arrays[f"params.{k}.{name}"] for _, name, _ in layer.parameter_names)
                for k, layer in enumerate(trainable)
            ]
        )


def _entry(value: Any, kinds: Mapping[str, type], what: str) -> tuple[type, dict[str, Any]]:
    """The whitelisted class and checked settings of one ``{"class", "settings"}`` entry."""
    value = check_keys(value, {"class", "settings"}, what)
    name, settings = value["class"], value["settings"]
    expect(isinstance(name, str) and name in kinds, unknown_class(name, kinds, what))
    cls = kinds[name]
    expect(isinstance(settings, dict), f"{what} {name}: settings must be a JSON object")
    arguments = cls.arguments()
    unknown = sorted(set(settings) - set(arguments))
    expect(not unknown, f"{what} {name} has unknown settings {unknown}")
    missing = sorted(a for a, required in arguments.items() if required and a not in settings)
    expect(not missing, f"{what} {name} lacks the settings {missing}")
    for argument, setting in settings.items():
        expect(
            setting is None or isinstance(setting, (bool, int, float, str)),
            f"{what} {name}: {argument} must be a number; got {setting!r:.80}",
        )
    return cls, settings


def _construct(cls: type, settings: dict[str, Any], what: str) -> Any:
    try:
        return cls(**settings)
    except (TypeError, ValueError, OverflowError) as error:
        raise Invalid(f"{what} {cls.__name__} has invalid settings: {error}") from None


def _plan_model(metadata: dict[str, str], declared: Mapping[str, Tensor]) -> _Plan:
    """Check the architecture and the training state, and every declared tensor against them,
    before any tensor is read: a file cannot make xpnn read or allocate more than the model
    it describes, and the file holds."""
    spec = check_keys(
        loads(metadata, "model"),
        {"backend", "dtype", "seed", "layers", "loss", "optimizer", "accuracy"},
        "the architecture",
    )
    saved_dtype, seed, layers = spec["dtype"], spec["seed"], spec["layers"]
    expect(saved_dtype in DTYPES, f"its dtype {saved_dtype!r:.80} is not one of {DTYPES}")
    expect(
        seed is None or (type(seed) is int and 0 <= seed < MAX_SEED),
        f"its seed {seed!r:.80} is not a non-negative integer",
    )
    expect(isinstance(layers, list) and layers, "its architecture has no layers")
    entries = [_entry(e, LAYERS, f"layer {i}") for i, e in enumerate(layers)]

    wanted: dict[str, Want] = {}
    k = total = 0  # layers with parameters so far, and their parameters
    for index, (cls, settings) in enumerate(entries):
        if not cls.parameter_names:
            continue
        try:  # the shapes the layer declares for these settings, before it is built
            shapes = cls.parameter_shapes(**settings)
        except (TypeError, ValueError, OverflowError) as error:
            raise Invalid(f"layer {index} {cls.__name__} has invalid settings: {error}") from None
        for _, name, _ in cls.parameter_names:
            wanted[f"params.{k}.{name}"] = Want((saved_dtype,), shapes[name])
            total += math.prod(shapes[name])
        k += 1
    check_declared(declared, wanted)  # the parameters first: the layers' own sizes
    mismatch = size_problem([(cls.__name__, cls, settings) for cls, settings in entries])
    expect(mismatch is None, f"its architecture is inconsistent: {mismatch}")
    loss = _entry(spec["loss"], LOSSES, "the loss")
    optimizer = accuracy = None
    if spec["optimizer"] is not None:
        optimizer = _entry(spec["optimizer"], OPTIMIZERS, "the optimizer")
    if spec["accuracy"] is not None:
        accuracy = _entry(spec["accuracy"], METRICS, "the accuracy")

    state: dict[str, Any] | None = None  # the training state
    wanted_too: dict[str, Want] = {}  # and the tensors it needs
    if "state" in metadata:
        state, wanted_too = checkpoints.plan_state(
            loads(metadata, "state"),
            None if optimizer is None else optimizer[0],
            accuracy is not None,
            saved_dtype,
            total,
        )
    check_declared(declared, wanted_too)
    wanted.update(wanted_too)
    unexpected = sorted(set(declared) - set(wanted))
    for name in unexpected:
        if name.startswith("optimizer."):
            expect(state is not None, "it holds optimizer state but no training state")
            expect(
                optimizer is not None,
                f"tensor {name!r:.80} is optimizer state, but the model has no optimizer",
            )
            raise Invalid(f"tensor {name!r:.80} is not state of {optimizer[0].__name__}")
    expect(not unexpected, f"it holds unexpected tensors {unexpected!r:.200}")
    return _Plan(saved_dtype, seed, entries, loss, optimizer, accuracy, state)


def _build_model(
    model_class: type[M],
    plan: _Plan,
    tensors: dict[str, np.ndarray],
    backend: str | Backend | None,
    dtype: Any,
) -> tuple[M, dict[str, Any] | None]:
    """The model ``plan`` describes, with the parameters and state ``tensors`` hold."""
    model = model_class(
        backend="numpy" if backend is None else backend,
        seed=plan.seed,
        dtype=plan.dtype if dtype is None else dtype,
    )
    check_finite(tensors, model.backend.dtype_name)
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
        raise Invalid(f"its architecture is inconsistent: {error}") from None

    trainable = [layer for layer in model.layers if layer.parameter_names]
    parameters = []
    for k, layer in enumerate(trainable):
        names = [f"params.{k}.{name}" for _, name, _ in layer.parameter_names]
        expect(all(name in tensors for name in names), f"layer {layer!r} cannot be loaded")
        parameters.append(tuple(tensors[name] for name in names))
    model.set_parameters(parameters)
    state = plan.state
    checkpoint = None if state is None else checkpoints.restore_state(model, state, tensors)
    return model, checkpoint
