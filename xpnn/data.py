"""Training data: checks before anything moves, and the one move to the device.

Host data is checked on the host, in the model's dtype, before it moves; an array already on
the device is checked there, with one read of the figures the checks need. Either way the
checks run once per call, never per step.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from .backends import Backend, to_numpy

if TYPE_CHECKING:
    from .building import ModelFace


def prepare(model: ModelFace, X: Any, y: Any, argument: str = "") -> tuple[Any, Any]:
    """``(X, y)`` checked against ``model`` (its input width, its outputs, its loss and metric)
    and on its device; errors name ``argument[0]``/``argument[1]``, or ``X``/``y``."""
    names = (f"{argument}[0]", f"{argument}[1]") if argument else ("X", "y")
    X = prepare_inputs(model.backend, X, model.n_inputs, names[0])
    y = prepare_targets(
        model.backend,
        y,
        X.shape[0],
        model.n_outputs,
        model.loss,
        model.layers[-1].output_range,
        names[1],
        binary=model.accuracy is not None and model.accuracy.binary_targets,
    )
    return X, y


def prepare_inputs(backend: Backend, X: Any, n_inputs: int | None, argument: str = "X") -> Any:
    """``X`` checked (2-D, not empty, ``n_inputs`` wide, real numbers, finite in the model's
    dtype) and on the device in that dtype."""
    X = _host_or_own(backend, X, argument)
    if X.ndim != 2:
        raise ValueError(f"{argument} must be 2-D (samples, features); got shape {tuple(X.shape)}")
    if X.shape[0] == 0:
        raise ValueError(f"{argument} is empty: it has no samples")
    xp = _namespace(backend, X)
    if not xp.isdtype(X.dtype, ("integral", "real floating")):
        raise TypeError(f"{argument} must hold real numbers; got dtype {X.dtype}")
    if n_inputs is not None and X.shape[1] != n_inputs:
        raise ValueError(
            f"{argument} has {X.shape[1]} features per sample but the first layer takes {n_inputs}"
        )
    converted = _in_dtype(backend, xp, X, backend.dtype)
    (finite,) = _read(xp, [xp.all(xp.isfinite(converted))])
    if not finite:
        raise _not_finite(backend, xp, X, argument)
    return backend.asarray(converted)


def prepare_targets(
    backend: Backend,
    y: Any,
    samples: int,
    outputs: int | None,
    loss: Any,
    output_range: tuple[float, float] = (-math.inf, math.inf),
    argument: str = "y",
    *,
    binary: bool = False,
) -> Any:
    """``y`` checked against the data, the model's ``outputs`` and what ``loss`` and the output
    layer (whose outputs lie in ``output_range``) can learn from, then on the device.

    For a categorical loss, class indices in ``[0, outputs)`` (1-D) or one-hot rows (2-D:
    non-negative, each summing to 1); for the others float targets shaped
    ``(samples, outputs)`` (1-D is taken as one output) within the loss's ``target_range`` and
    the output range, small enough that the loss summed over the samples stays finite, and
    each 0 or 1 where ``binary`` (a binary accuracy compares 0/1 predictions with them).
    """
    y = _host_or_own(backend, y, argument)
    xp = _namespace(backend, y)
    if y.ndim not in (1, 2):
        raise ValueError(f"{argument} must be 1-D or 2-D; got shape {tuple(y.shape)}")
    if y.shape[0] != samples:
        raise ValueError(f"{argument} has {y.shape[0]} samples but X has {samples}")
    if xp.isdtype(y.dtype, "bool") or not xp.isdtype(y.dtype, ("integral", "real floating")):
        raise TypeError(f"{argument} must hold numbers; got dtype {y.dtype}")
    if loss.categorical and y.ndim == 1:
        return _labels(backend, xp, y, outputs, argument)
    if loss.categorical:
        if y.shape[1] == 1 and outputs != 1:  # class labels as a column: (samples, 1)
            raise ValueError(
                f"{argument} has shape {tuple(y.shape)}: its class labels look like a column; "
                f"pass them 1-D, as {argument}.ravel() gives them (one-hot rows would have "
                f"{'a column' if outputs is None else f'{outputs} columns,'} one per class)"
            )
        if outputs is not None and y.shape[1] != outputs:
            raise ValueError(
                f"{argument} is one-hot with {y.shape[1]} columns but the model outputs "
                f"{outputs} classes"
            )
    else:
        if y.ndim == 1 and outputs == 1:
            y = xp.reshape(y, (samples, 1))
        if y.ndim == 1 or (outputs is not None and y.shape[1] != outputs):
            raise ValueError(
                f"{argument} must have shape ({samples}, {outputs}), one target per model "
                f"output; got {tuple(y.shape)}"
            )
    converted = _in_dtype(backend, xp, y, backend.dtype)
    figures = [xp.all(xp.isfinite(converted)), xp.min(converted), xp.max(converted)]
    if loss.categorical:  # the smallest and the largest row sum
        sums = xp.sum(converted, axis=1)
        figures += [xp.min(sums), xp.max(sums)]
    if binary:
        figures.append(xp.all((converted == 0) | (converted == 1)))
    finite, low, high, *rest = _read(xp, figures)
    if not finite:
        raise _not_finite(backend, xp, y, argument)
    if loss.categorical:
        _check_one_hot(backend, y, low, rest[0], rest[1], argument)
    else:
        _check_range(backend, loss, output_range, samples, low, high, argument)
    if binary and not rest[-1]:
        raise ValueError(
            f"{argument} must hold only 0 and 1 for CategoricalAccuracy(binary=True), which "
            f"compares each 0/1 prediction with its target; it holds values in [{low:g}, {high:g}]"
        )
    return backend.asarray(converted)


def _labels(backend: Backend, xp: Any, y: Any, outputs: int | None, argument: str) -> Any:
    """Sparse class labels: whole numbers in [0, outputs), as indices on the device."""
    figures = [xp.min(y), xp.max(y)]
    floating = xp.isdtype(y.dtype, "real floating")
    if floating:
        figures += [xp.all(xp.isfinite(y)), xp.all(y == xp.floor(y))]
    low, high, *rest = _read(xp, figures)
    if floating and not rest[0]:
        raise ValueError(f"{argument} contains NaN or infinity")
    if floating and not rest[1]:
        raise ValueError(f"{argument} holds class labels, which must be whole numbers")
    if low < 0 or (outputs is not None and high >= outputs):
        raise ValueError(
            f"{argument} holds class labels in [{low:g}, {high:g}] but the model has {outputs} "
            f"classes: labels must lie in [0, {(outputs or 0) - 1}]"
        )
    return backend.asarray(y, dtype=backend.index_dtype)


def _check_one_hot(
    backend: Backend, y: Any, low: float, smallest: float, largest: float, argument: str
) -> None:
    """One-hot (or smoothed) rows: non-negative (``low`` is the smallest value), each summing
    to 1 within the precision of the coarser of ``y``'s dtype and the model's (``smallest`` and
    ``largest`` are the extreme row sums)."""
    precisions = [np.finfo(backend.dtype_name).eps]
    if np.dtype(_dtype_name(y.dtype)).kind == "f":
        precisions.append(np.finfo(_dtype_name(y.dtype)).eps)
    tolerance = math.sqrt(max(precisions))
    worst = max(smallest, largest, key=lambda total: abs(total - 1))
    if low < 0 or abs(worst - 1) > tolerance:
        found = f"its smallest value is {low:g}" if low < 0 else f"a row sums to {worst:g}"
        raise ValueError(
            f"{argument} holds one-hot rows (probabilities over the classes), which must be "
            f"non-negative and each sum to 1 (within {tolerance:.1g}), but {found}; class "
            "indices (1-D) are the other form"
        )


def _check_range(
    backend: Backend,
    loss: Any,
    output_range: tuple[float, float],
    samples: int,
    low: float,
    high: float,
    argument: str,
) -> None:
    """Float targets within what the loss takes and the output layer can reach, and small
    enough that the loss summed over ``samples`` stays finite in the model's dtype."""
    for (bottom, top), what in (
        (loss.target_range, f"{type(loss).__name__} takes targets"),
        (output_range, "the output layer gives values"),
    ):
        if low < bottom or high > top:
            raise ValueError(
                f"{argument} holds values in [{low:g}, {high:g}], but {what} in "
                f"[{bottom:g}, {top:g}]"
            )
    largest = max(abs(low), abs(high))
    limit = float(np.finfo(backend.dtype_name).max)
    # A prediction as far off as the target itself, on every sample: an error of twice it.
    if loss.growth and samples * (2 * largest) ** loss.growth > limit:
        advice = " (or use dtype='float64')" if backend.dtype_name == "float32" else ""
        raise ValueError(
            f"{argument} holds values up to {largest:.3g} in magnitude: "
            f"{type(loss).__name__} summed over {samples} samples would overflow "
            f"{backend.dtype_name}; scale {argument} down{advice}"
        )


def _host_or_own(backend: Backend, a: Any, argument: str) -> Any:
    if backend.is_own(a):
        return a
    backend.refuse_foreign(a, argument)  # also refuses masked arrays
    try:
        array = np.asarray(a)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"{argument} must be an array of numbers, with rows of one length; got "
            f"{type(a).__name__} ({error})"
        ) from error
    if array.ndim == 0 and array.dtype == object:  # not an array-like at all (a sparse matrix)
        raise TypeError(f"{argument} must be an array of numbers; got {type(a).__name__}")
    return array


def _namespace(backend: Backend, a: Any) -> Any:
    """NumPy for host arrays (a NumPy model's own included), else the backend's namespace."""
    return backend.xp if backend.is_own(a) and not backend.on_host else np


def _in_dtype(backend: Backend, xp: Any, a: Any, dtype: Any) -> Any:
    """``a`` converted to the model's float dtype where it is (the host or the device); values
    beyond the dtype's range become infinite, without a warning, for the check to find."""
    with np.errstate(over="ignore"):
        if xp is np:
            return np.asarray(a, dtype=backend.dtype_name)
        return a if a.dtype == dtype else xp.astype(a, dtype)


def _read(xp: Any, figures: list[Any]) -> list[float]:
    """0-d arrays as Python floats, in one read (one transfer from a device)."""
    if xp is np:
        return [float(f) for f in figures]
    return to_numpy(xp.stack([xp.astype(f, xp.float64) for f in figures])).tolist()


def _not_finite(backend: Backend, xp: Any, a: Any, argument: str) -> ValueError:
    """The error for data not finite in the model's dtype: NaN or infinity given, or values
    beyond the dtype's range."""
    floating = xp.isdtype(a.dtype, "real floating")
    if floating and not _read(xp, [xp.all(xp.isfinite(a))])[0]:
        return ValueError(f"{argument} contains NaN or infinity")
    if xp is np:  # in its own dtype, which may be wider than float64 (longdouble)
        largest = np.format_float_scientific(np.max(np.abs(a)), precision=2, trim="-")
    else:
        largest = f"{_read(xp, [xp.max(xp.abs(a))])[0]:.3g}"
    advice = " (or use dtype='float64')" if backend.dtype_name == "float32" else ""
    return ValueError(
        f"{argument} holds values beyond {backend.dtype_name}'s range, the model's dtype "
        f"(largest {np.finfo(backend.dtype_name).max:.3g}): its largest magnitude is "
        f"{largest}; scale it down{advice}"
    )


def _dtype_name(dtype: Any) -> str:
    """A dtype of any array library as NumPy names it."""
    return getattr(dtype, "name", None) or str(dtype).rpartition(".")[2]
