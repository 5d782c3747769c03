"""A model's description as a file stores it, and the limits of what a file can store.

The description names each part (layer, loss, optimizer, metric) by its class and constructor
settings (``config()``). Only xpnn's own classes are named, and only values a file can hold and
load back are written: a seed below ``MAX_SEED``, counts below ``MAX_COUNT``. ``check_savable``
runs the same checks before training starts, so that a checkpoint never fails epochs later.
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from . import activations, layers, losses, metrics, optimizers
from .layers import Layer
from .losses import Loss
from .metrics import Accuracy
from .optimizers import Optimizer

if TYPE_CHECKING:
    from .model import Model

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
]

#: A saved seed is below this (NumPy takes larger ones; a file holds 512 bits of it).
MAX_SEED = 2**512
#: A saved count (steps, epochs, samples) is below this: an int64, as every reader has.
MAX_COUNT = 2**63
#: The deepest nesting of lists and objects in a checkpoint dict: JSON readers recurse.
MAX_DEPTH = 100


def _exported(module: Any, base: type, *, but: tuple[type, ...] = ()) -> dict[str, type]:
    """The classes ``module`` exports that derive from ``base`` (not ``base`` itself), by name."""
    classes = (getattr(module, name) for name in module.__all__)
    return {
        c.__name__: c
        for c in classes
        if isinstance(c, type) and issubclass(c, base) and c is not base and c not in but
    }


# The only classes a file may name, xpnn's own: nothing else is ever looked up or called. A new
# layer, loss, optimizer or metric that its module exports is among them.
LAYERS = {**_exported(layers, Layer), **_exported(activations, Layer)}
# The model combines Softmax with CategoricalCrossentropy itself; a file names the two.
LOSSES = _exported(losses, Loss, but=(losses.SoftmaxCategoricalCrossentropy,))
OPTIMIZERS = _exported(optimizers, Optimizer)
METRICS = _exported(metrics, Accuracy)


def describe_model(model: Model) -> dict[str, Any]:
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


def describe(obj: Any, kinds: dict[str, type], what: str) -> dict[str, Any] | None:
    """``{"class": name, "settings": {argument: value}}`` from the constructor's arguments."""
    if obj is None:
        return None
    name = type(obj).__name__
    if kinds.get(name) is not type(obj):
        raise TypeError(
            f"cannot save {what} {obj!r}: only xpnn's own classes can be saved "
            f"({', '.join(sorted(kinds))})"
        )
    settings = obj.config()
    for argument, value in settings.items():
        if isinstance(value, np.generic):
            value = settings[argument] = value.item()
        if value is not None and not isinstance(value, (bool, int, float, str)):
            raise TypeError(f"cannot save {what} {name}: {argument}={value!r} is not a number")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"cannot save {what} {name}: {argument}={value!r} is not finite")
    return {"class": name, "settings": settings}


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
        raise TypeError(f"checkpoint must be a dict such as {{'epoch': 12}}; got {checkpoint!r}")
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


def check_savable(model: Model, argument: str) -> None:
    """Raise as a save would, with ``argument`` first in the message, if ``model`` could not be
    saved (its seed, a part that is not xpnn's own, a setting or a count a file cannot store):
    ``train`` with a checkpoint calls it before the first step, not at the first checkpoint."""
    try:
        describe_model(model)
        if model.rng.bit_generator.state.get("bit_generator") != "PCG64":
            raise TypeError("model.rng must be a NumPy Generator on PCG64 to be saved")
        if model.optimizer is not None:
            check_count(model.optimizer.iterations, "optimizer.iterations")
        check_count(model.epochs_trained, "epochs_trained")
    except (TypeError, ValueError) as error:
        raise type(error)(f"{argument}: the model cannot be saved: {error}") from None
