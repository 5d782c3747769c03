"""A model's description as a file stores it, and the limits of what a file can store.

The description names each part (layer, loss, optimizer, metric) by its class and constructor
settings (``config()``). Only classes of the registry (``parts``: xpnn's own and those given to
``xpnn.register``) are named, and only values a file can hold and load back are written: a
seed below ``MAX_SEED``, counts below ``MAX_COUNT``. ``check_savable`` runs the same checks
before training starts, so that a checkpoint never fails epochs later.
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from . import parts
from ._checks import Part, shown

if TYPE_CHECKING:
    from .building import ModelFace

__all__ = [
    "LAYERS",
    "LOSSES",
    "MAX_COUNT",
    "MAX_DEPTH",
    "MAX_SEED",
    "METRICS",
    "OPTIMIZERS",
    "check_count",
    "check_savable",
    "checkpoint_info",
    "describe",
    "describe_model",
    "unknown_class",
]

#: A saved seed is below this (NumPy takes larger ones; a file holds 512 bits of it).
MAX_SEED = 2**512
#: A saved count (steps, epochs, samples) is below this: an int64, as every reader has.
MAX_COUNT = 2**63
#: The deepest nesting of lists and objects in a checkpoint dict: JSON readers recurse.
MAX_DEPTH = 100


# The only classes a file may name, each kind's own and registered ones, by name: live views
# of the registry, so that a class registered later is among them. Nothing else is ever looked
# up or called.
LAYERS = parts.classes("layer")
LOSSES = parts.classes("loss")
OPTIMIZERS = parts.classes("optimizer")
METRICS = parts.classes("metric")


def describe_model(model: ModelFace) -> dict[str, Any]:
    """The architecture as a file stores it: dtype, seed and each part by class and settings.

    TypeError or ValueError naming the setting if something cannot be stored and loaded back.
    """
    seed = model.seed
    if isinstance(seed, np.integer):
        seed = int(seed)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise TypeError(
            f"only a model seeded with an int (or None) can be saved; its seed is a "
            f"{type(seed).__name__}"
        )
    if seed is not None and not 0 <= seed < MAX_SEED:
        raise ValueError(
            f"only a model seeded with an int below 2**512 can be saved; its seed has "
            f"{seed.bit_length()} bits"
        )
    return {
        "backend": model.backend.name,  # informational: a file loads on any backend
        "dtype": model.backend.dtype_name,
        "seed": seed,
        "layers": [describe(layer, LAYERS, "layer") for layer in model.layers],
        "loss": describe(model.loss, LOSSES, "loss"),
        "optimizer": describe(model.optimizer, OPTIMIZERS, "optimizer"),
        "accuracy": describe(model.accuracy, METRICS, "accuracy"),
    }


def describe(obj: Any, kinds: Mapping[str, type], what: str) -> dict[str, Any] | None:
    """``{"class": name, "settings": {argument: value}}`` from the constructor's arguments."""
    if obj is None:
        return None
    name = type(obj).__name__
    if kinds.get(name) is not type(obj):
        known = kinds.get(name)
        other = "" if known is None else f" (that name is {known.__module__}.{known.__qualname__})"
        raise TypeError(
            f"cannot save {what} {obj!r:.200}: {name} is neither xpnn's own nor registered"
            f"{other}; call xpnn.register({name}) on your class to save and load it"
        )
    if type(obj).config is Part.config:
        unkept = [argument for argument in obj.arguments() if not hasattr(obj, argument)]
        if unkept:
            raise TypeError(
                f"cannot save {what} {name}: it keeps no attribute for its constructor's "
                f"argument {unkept[0]}; keep each as self.{unkept[0]} (config() reads them)"
            )
    settings = obj.config()
    for argument, value in settings.items():
        if isinstance(value, np.generic):
            value = settings[argument] = value.item()
        if value is not None and not isinstance(value, (bool, int, float, str)):
            raise TypeError(
                f"cannot save {what} {name}: {argument}={value!r:.80} is not a number, string, "
                f"boolean or None"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"cannot save {what} {name}: {argument}={value!r} is not finite")
    return {"class": name, "settings": settings}


def unknown_class(name: Any, kinds: Mapping[str, type], what: str) -> str:
    """Why a file's ``name`` for a part of ``what`` is refused: not a class of the registry."""
    if not isinstance(name, str):
        return f"{what} has class {name!r:.80}, which is not a name"
    return (
        f"{what} names the class {name!r:.80}, which is neither xpnn's own nor registered: call "
        f"xpnn.register on your class {name:.80} before loading (xpnn's own and the registered: "
        f"{', '.join(sorted(kinds))})"
    )


def check_count(value: Any, name: str) -> int:
    """``value`` as an int a file can store (0 to ``MAX_COUNT`` - 1); TypeError (not a whole
    number) or ValueError naming ``name`` otherwise."""
    try:
        count = operator.index(value)
    except TypeError:
        raise TypeError(f"cannot save {name}={value!r:.80}: it is not an integer") from None
    if not 0 <= count < MAX_COUNT:
        raise ValueError(f"cannot save {name}={count}: a saved count lies in [0, 2**63)")
    return count


def checkpoint_info(checkpoint: Any) -> dict[str, Any]:
    """The caller's ``checkpoint`` dict as a file stores it: string keys, JSON values nested at
    most ``MAX_DEPTH`` deep (a NumPy scalar at the top taken as its Python value); TypeError or
    ValueError naming ``checkpoint`` otherwise."""
    if not isinstance(checkpoint, Mapping):
        raise TypeError(
            f"checkpoint must be a dict such as {{'epoch': 12}}; got {shown(checkpoint)}"
        )
    info = {k: v.item() if isinstance(v, np.generic) else v for k, v in checkpoint.items()}
    if not all(isinstance(key, str) for key in info):
        raise TypeError("checkpoint keys must be strings")
    level, depth = [info], 1
    while level:  # level by level, as deep recursion would fail in the check itself
        level = [
            v
            for value in level
            for v in (value.values() if isinstance(value, dict) else value)
            if isinstance(v, (dict, list, tuple))
        ]
        depth += bool(level)
        if depth > MAX_DEPTH:
            raise ValueError(f"checkpoint nests lists and dicts more than {MAX_DEPTH} deep")
    try:
        json.dumps(info, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise TypeError(f"checkpoint must be JSON-serializable: {error}") from error
    return info


def check_savable(model: ModelFace, argument: str) -> None:
    """Raise as a save would, with ``argument`` first in the message, if ``model`` could not be
    saved (its seed, a part neither xpnn's own nor registered, a setting or a count a file
    cannot store): ``train`` with a checkpoint calls it before the first step, not at the first
    checkpoint."""
    try:
        describe_model(model)
        if model.rng.bit_generator.state.get("bit_generator") != "PCG64":
            raise TypeError("model.rng must be a NumPy Generator on PCG64 to be saved")
        if model.optimizer is not None:
            check_count(model.optimizer.iterations, "optimizer.iterations")
        check_count(model.epochs_trained, "epochs_trained")
    except (TypeError, ValueError) as error:
        raise type(error)(f"{argument}: the model cannot be saved: {error}") from None
