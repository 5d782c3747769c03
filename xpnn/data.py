"""Training data: checks on the host before anything moves, and the one move to the device."""

from __future__ import annotations

from typing import Any

import numpy as np

from .backend import Backend, to_numpy


def prepare_inputs(backend: Backend, X: Any, n_inputs: int | None, argument: str = "X") -> Any:
    """``X`` checked (2-D, not empty, ``n_inputs`` wide, finite) and on the device."""
    X = _host_or_own(backend, X, argument)
    if X.ndim != 2:
        raise ValueError(f"{argument} must be 2-D (samples, features); got shape {tuple(X.shape)}")
    if X.shape[0] == 0:
        raise ValueError(f"{argument} is empty: it has no samples")
    xp = backend.xp if backend.is_own(X) else np
    if not xp.isdtype(X.dtype, ("integral", "real floating")):
        raise TypeError(f"{argument} must hold real numbers; got dtype {X.dtype}")
    if n_inputs is not None and X.shape[1] != n_inputs:
        raise ValueError(
            f"{argument} has {X.shape[1]} features per sample but the first layer takes {n_inputs}"
        )
    if not _host_bool(xp.all(xp.isfinite(X))):
        raise ValueError(f"{argument} contains NaN or infinity")
    return backend.asarray(X)


def prepare_targets(
    backend: Backend,
    y: Any,
    samples: int,
    outputs: int | None,
    categorical: bool,
    argument: str = "y",
) -> Any:
    """``y`` checked against the data and the model's ``outputs``, then on the device.

    Class labels (``categorical``) are indices in ``[0, outputs)`` or one-hot rows; other
    targets are floats shaped ``(samples, outputs)`` (1-D is taken as one output).
    """
    y = _host_or_own(backend, y, argument)
    xp = backend.xp if backend.is_own(y) else np
    if y.ndim not in (1, 2):
        raise ValueError(f"{argument} must be 1-D or 2-D; got shape {tuple(y.shape)}")
    if y.shape[0] != samples:
        raise ValueError(f"{argument} has {y.shape[0]} samples but X has {samples}")
    if xp.isdtype(y.dtype, "bool") or not xp.isdtype(y.dtype, ("integral", "real floating")):
        raise TypeError(f"{argument} must hold numbers; got dtype {y.dtype}")
    if xp.isdtype(y.dtype, "real floating") and not _host_bool(xp.all(xp.isfinite(y))):
        raise ValueError(f"{argument} contains NaN or infinity")
    if not categorical:
        if y.ndim == 1 and outputs == 1:
            y = xp.reshape(y, (samples, 1))
        if y.ndim == 1 or (outputs is not None and y.shape[1] != outputs):
            raise ValueError(
                f"{argument} must have shape ({samples}, {outputs}), one target per model "
                f"output; got {tuple(y.shape)}"
            )
        return backend.asarray(y)
    if y.ndim == 2:
        if outputs is not None and y.shape[1] != outputs:
            raise ValueError(
                f"{argument} is one-hot with {y.shape[1]} columns but the model outputs "
                f"{outputs} classes"
            )
        return backend.asarray(y)
    if xp.isdtype(y.dtype, "real floating") and not _host_bool(xp.all(y == xp.floor(y))):
        raise ValueError(f"{argument} holds class labels, which must be whole numbers")
    low, high = (float(v) for v in to_numpy(xp.stack([xp.min(y), xp.max(y)])))
    if low < 0 or (outputs is not None and high >= outputs):
        raise ValueError(
            f"{argument} holds class labels in [{low:g}, {high:g}] but the model has {outputs} "
            f"classes: labels must lie in [0, {(outputs or 0) - 1}]"
        )
    return backend.asarray(y, dtype=backend.index_dtype)


def _host_or_own(backend: Backend, a: Any, argument: str) -> Any:
    if backend.is_own(a):
        return a
    backend.refuse_foreign(a, argument)
    try:
        return np.asarray(a)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{argument} must be an array; got {type(a).__name__}") from error


def _host_bool(value: Any) -> bool:
    return bool(to_numpy(value))
