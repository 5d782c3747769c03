"""Check a part's backward pass against central differences of its forward pass.

A layer, activation or loss written as the book teaches has a forward pass and a backward pass
that must be its derivative. ``check_gradients`` compares the two numerically, on the part's
own backend, in float64 where that backend has it, and leaves the part as it found it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import numpy as np

from ._checks import NON_NEGATIVE, POSITIVE, host_numbers, real, shown
from .backends import Backend, to_numpy
from .building import passed_on, takes_keyword
from .layers import Layer
from .losses import Loss, SoftmaxCategoricalCrossentropy

__all__ = ["GradientCheckError", "check_gradients"]

#: Step and tolerances by the dtype the check computes in: (step, rtol, atol). float32 has 24
#: bits, so its differences are coarse and its check is a rough one.
DEFAULTS = {"float64": (1e-6, 1e-6, 1e-8), "float32": (1e-2, 1e-2, 1e-3)}


class GradientCheckError(AssertionError):
    """A backward pass disagrees with central differences of the forward pass.

    An ``AssertionError``, as ``numpy.testing``'s are: it says that the code under test is
    wrong, not the arguments (those raise ``TypeError`` or ``ValueError``), and pytest reports
    it as a failed check.
    """


def check_gradients(
    part: Layer | Loss,
    inputs: Any,
    targets: Any = None,
    *,
    step: float | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    seed: int = 0,
    dtype: str | None = None,
) -> None:
    """Check ``part``'s backward pass against central differences of its forward pass.

    A layer or activation: ``dinputs`` and the gradient of every parameter it names in
    ``parameter_names`` are checked against the central differences of
    ``sum(forward(inputs) * upstream)``, plus ``regularization_loss()`` where the layer is
    regularized, for an ``upstream`` gradient drawn from ``seed``. A loss: ``dinputs`` of
    ``backward(predictions, targets)`` against the differences of ``calculate(predictions,
    targets)``, the mean loss, so pass the predictions as ``inputs`` and the targets as
    ``targets``. The fused softmax cross-entropy takes the logits: its ``forward(logits,
    targets)`` is the mean loss and its ``backward`` the gradient with respect to the logits.

    The check runs on the part's backend in float64 (the part's parameters are copied to it);
    on a backend without float64 (torch on Apple's MPS) it runs in float32, with a coarser step
    and tolerances (``dtype="float32"`` asks for that anywhere). Every forward pass starts from
    the part's state as it was, so a Dropout draws the same mask in each; afterwards the part
    holds what it held before, the very same arrays. Each element costs two forward passes:
    check a small batch. Keep inputs away from kinks (ReLU's 0), where the derivative jumps.

    Args:
        part: an ``xpnn.Layer`` (a layer or activation) or ``xpnn.Loss``, xpnn's or your own.
        inputs: the inputs of the forward pass (a loss: its predictions), host or device data.
        targets: a loss's targets (``y_true``); None for a layer.
        step: the central differences' step (1e-6 in float64, 1e-2 in float32).
        rtol: an element agrees if ``|analytic - numerical| <= atol + rtol * |numerical|``
            (1e-6 in float64, 1e-2 in float32).
        atol: as ``rtol`` says (1e-8 in float64, 1e-3 in float32).
        seed: seeds the random upstream gradient.
        dtype: None (float64 where the backend has it), "float64" or "float32".

    Raises:
        GradientCheckError: naming each array that disagrees (the parameter by its name, or
            ``inputs``), its worst element's index, both values and the tolerance.
        TypeError: for an argument of the wrong kind, named, before the part is touched.
        ValueError: for a value out of place (inputs of the wrong shape), named, likewise.

    Examples:
        >>> import numpy as np
        >>> import xpnn
        >>> rng = np.random.default_rng(0)
        >>> xpnn.check_gradients(xpnn.Dense(4, 3, seed=0), rng.standard_normal((5, 4)))
        >>> predictions, y = rng.uniform(0.1, 0.9, (5, 2)), rng.integers(0, 2, (5, 2))
        >>> xpnn.check_gradients(xpnn.BinaryCrossentropy(), predictions, targets=y)
        >>> logits, labels = rng.standard_normal((5, 3)), [0, 2, 1, 1, 0]
        >>> xpnn.check_gradients(xpnn.SoftmaxCategoricalCrossentropy(), logits, targets=labels)
        >>> class Doubled(xpnn.ReLU):  # a wrong backward pass
        ...     def backward(self, dvalues):
        ...         return super().backward(2 * dvalues)
        >>> xpnn.check_gradients(Doubled(), rng.uniform(0.5, 1, (2, 2)))
        Traceback (most recent call last):
        ...
        xpnn.gradcheck.GradientCheckError: the backward pass of Doubled() disagrees ...
    """
    backend, target_dtype = _check_part(part), _check_dtype(dtype)
    is_loss = isinstance(part, Loss)
    host_inputs = _check_inputs(part, inputs, is_loss)
    if is_loss and targets is None:
        raise TypeError(
            f"check_gradients of the loss {part!r} needs its targets: "
            "check_gradients(loss, predictions, targets=y_true)"
        )
    if not is_loss and targets is not None:
        raise TypeError(
            f"targets is for a loss; {part!r} is a layer, whose gradient is checked through "
            "a random upstream gradient"
        )
    if is_loss:
        _check_targets(backend, targets, host_inputs)
    else:
        _check_parameter_names(part)
    names: tuple[tuple[str, str, str], ...] = ()
    if isinstance(part, Layer):
        names = tuple(part.parameter_names)
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int; got {shown(seed)}")
    if seed < 0:  # NumPy's own error would not name it
        raise ValueError(f"seed must be a non-negative int; got {seed}")
    checked = _float_backend(backend, target_dtype)
    default_step, default_rtol, default_atol = DEFAULTS[checked.dtype_name]
    step = default_step if step is None else real(step, "step", **POSITIVE)
    rtol = default_rtol if rtol is None else real(rtol, "rtol", **NON_NEGATIVE)
    atol = default_atol if atol is None else real(atol, "atol", **NON_NEGATIVE)

    saved = _snapshot(part)
    try:
        _move(part, checked, is_loss)
        base = _snapshot(part)
        evaluate, analytic = _passes(part, checked, host_inputs, targets, is_loss, seed, base)
        labels = {"inputs": "inputs (dinputs)"}
        labels.update({p: f"{p} ({g})" for _, p, g in names})
        failures = []
        parameters = [(p, to_numpy(getattr(part, p)).astype(np.float64)) for _, p, _ in names]
        for name, array in [("inputs", host_inputs), *parameters]:
            numerical = _central_differences(evaluate, name, array, step)
            failure = _compare(labels[name], analytic[name], numerical, rtol, atol)
            if failure:
                failures.append(failure)
    finally:
        _restore(saved)
    if failures:
        what = "the mean loss" if is_loss else "sum(forward(inputs) * upstream)"
        raise GradientCheckError(
            f"the backward pass of {part!r} disagrees with central differences of {what} "
            f"(step {step:g}, {checked.dtype_name}):\n" + "\n".join(failures)
        )


def _check_part(part: Any) -> Backend:
    """The part's backend; TypeError naming ``part`` for anything but a layer or loss."""
    if not isinstance(part, (Layer, Loss)):
        raise TypeError(
            "part must be an xpnn.Layer (a layer or activation) or an xpnn.Loss; got "
            f"{type(part).__name__}"
        )
    for method in ("forward", "backward"):
        if not callable(getattr(part, method, None)):
            raise TypeError(f"part {part!r} has no {method}() method to check")
    return part.backend


def _check_dtype(dtype: Any) -> str | None:
    if dtype is not None and dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be None, 'float32' or 'float64'; got {shown(dtype)}")
    return None if dtype is None else str(dtype)


def _check_inputs(part: Any, inputs: Any, is_loss: bool) -> np.ndarray:
    """The inputs as a float64 host array: real, finite, not empty, of the shape ``part``
    takes (as far as it says); TypeError or ValueError naming ``inputs`` otherwise."""
    if part.backend.is_own(inputs):
        inputs = to_numpy(inputs)
    else:
        part.backend.refuse_foreign(inputs, "inputs")
    host = host_numbers(inputs, "inputs").astype(np.float64)
    if host.size == 0:
        raise ValueError(f"inputs must hold at least one value; got shape {host.shape}")
    if not np.all(np.isfinite(host)):
        raise ValueError("inputs must be finite; they hold NaN or infinity")
    width = None if is_loss else _width(part)
    if (is_loss or width is not None) and host.ndim != 2:
        raise ValueError(f"inputs must be 2-D (samples, features) for {part!r}; got {host.shape}")
    if width is not None and host.shape[1] != width:
        raise ValueError(
            f"inputs must have shape (samples, {width}) for {part!r}; got {host.shape}"
        )
    return host


def _width(part: Any) -> int | None:
    """How many features ``part`` takes, where its ``widths`` says (Dense: ``n_inputs``)."""
    try:
        width = type(part).widths(**part.config())[0]
    except (KeyError, TypeError, ValueError):  # a layer of one's own may not say
        return None
    return width if isinstance(width, int) else None


def _check_targets(backend: Backend, targets: Any, inputs: np.ndarray) -> None:
    """TypeError or ValueError naming ``targets`` unless they are real numbers, one row or
    label per sample of the predictions."""
    if backend.is_own(targets):
        shape = tuple(targets.shape)
    else:
        backend.refuse_foreign(targets, "targets")
        shape = host_numbers(targets, "targets").shape
    if not shape or shape[0] != inputs.shape[0]:
        raise ValueError(
            f"targets must have one label or row per sample: {inputs.shape[0]}; got shape {shape}"
        )


def _check_parameter_names(part: Any) -> None:
    """TypeError naming ``part`` unless each ``parameter_names`` entry names an attribute."""
    for entry in part.parameter_names:
        if not (isinstance(entry, tuple) and len(entry) == 3):
            raise TypeError(
                f"part {part!r}: each parameter_names entry must be (prefix, parameter, "
                f"gradient), as ('weight', 'weights', 'dweights'); got {shown(entry)}"
            )
        if getattr(part, entry[1], None) is None:
            raise TypeError(f"part {part!r} names the parameter {entry[1]!r} but has none")


def _float_backend(backend: Backend, dtype: str | None) -> Backend:
    """The part's backend in the dtype to check in: float64 unless asked otherwise or the
    device has none. A backend already in that dtype is kept as it is (its compiled paths)."""
    wanted = dtype or "float64"
    if backend.dtype_name == wanted:
        return backend
    try:
        return backend.with_dtype(wanted)
    except ValueError:
        if dtype is not None:  # asked for explicitly: say why not
            raise
        return backend if backend.dtype_name == "float32" else backend.with_dtype("float32")


def _parts(part: Any) -> list[Any]:
    """``part`` and the layers and losses it holds (the fused loss's softmax and loss)."""
    found = [part]
    for value in vars(part).values():
        if isinstance(value, (Layer, Loss)) and value is not part:
            found.extend(_parts(value))
    return found


def _snapshot(part: Any) -> list[tuple[Any, dict[str, Any]]]:
    return [(p, dict(vars(p))) for p in _parts(part)]


def _restore(snapshot: list[tuple[Any, dict[str, Any]]]) -> None:
    for p, attributes in snapshot:
        vars(p).clear()
        vars(p).update(attributes)


def _move(part: Any, backend: Backend, is_loss: bool) -> None:
    """Put ``part`` on ``backend`` with float copies of its parameters and fresh gradient
    arrays; the originals are never written to."""
    if is_loss:
        part.build(backend)
        return
    part.backend = backend
    for _, name, gradient in part.parameter_names:
        setattr(part, name, backend.asarray(to_numpy(getattr(part, name)).astype(np.float64)))
        setattr(part, gradient, backend.zeros(tuple(getattr(part, name).shape)))


def _passes(
    part: Any,
    backend: Backend,
    inputs: np.ndarray,
    targets: Any,
    is_loss: bool,
    seed: int,
    base: list[tuple[Any, dict[str, Any]]],
) -> tuple[Callable[[str, np.ndarray], float], dict[str, np.ndarray]]:
    """The scalar as a function of one array (by name) with the others as they are, and the
    backward pass's gradients by name (host float64 copies)."""
    regularized = not is_loss and bool(getattr(part, "regularized", False))
    upstream: np.ndarray | None = None

    def forward(values: np.ndarray) -> Any:
        if isinstance(part, SoftmaxCategoricalCrossentropy):
            return part.forward(backend.asarray(values), targets)
        if is_loss:
            return part.calculate(backend.asarray(values), targets)
        values = backend.asarray(values)  # as a model calls it (the book's takes training)
        training = takes_keyword(part.forward, "training")  # the book's forward requires it
        returned = part.forward(values, False) if training else part.forward(values)
        return passed_on(part, returned, "forward", "output")

    def scalar(output: Any) -> float:
        total = to_numpy(output).astype(np.float64)
        if upstream is not None:
            total = total * upstream
        value = float(np.sum(total))
        if regularized:
            value += float(to_numpy(part.regularization_loss()))
        return value

    def evaluate(name: str, values: np.ndarray) -> float:
        _restore(base)
        if name == "inputs":
            return scalar(forward(values))
        setattr(part, name, backend.asarray(values))
        return scalar(forward(inputs))

    output = forward(inputs)
    if not is_loss:
        shape = tuple(output.shape)
        upstream = np.random.default_rng(seed).standard_normal(shape)
        part.backward(backend.asarray(upstream))
    elif isinstance(part, SoftmaxCategoricalCrossentropy):
        part.backward(part.output, targets)
    else:
        part.backward(backend.asarray(inputs), targets)
    if not math.isfinite(scalar(output)):
        raise ValueError(f"the forward pass of {part!r} is not finite at these inputs")
    analytic = {"inputs": _gradient(part, "dinputs", "inputs", inputs.shape)}
    for _, name, gradient in () if is_loss else tuple(part.parameter_names):
        analytic[name] = _gradient(part, gradient, name, tuple(getattr(part, name).shape))
    return evaluate, analytic


def _gradient(part: Any, attribute: str, of: str, shape: tuple[int, ...]) -> np.ndarray:
    """``part.<attribute>`` after the backward pass, on the host; GradientCheckError if it is
    missing or not shaped as ``of``."""
    value = getattr(part, attribute, None)
    if value is None:
        raise GradientCheckError(f"the backward pass of {part!r} set no {attribute} for {of}")
    host = to_numpy(value).astype(np.float64)
    if host.shape != shape:
        raise GradientCheckError(
            f"{attribute} of {part!r} has shape {host.shape} but {of} has shape {shape}"
        )
    return host


def _central_differences(
    evaluate: Callable[[str, np.ndarray], float], name: str, values: np.ndarray, step: float
) -> np.ndarray:
    gradient = np.zeros_like(values)
    moved = values.copy()
    for index in np.ndindex(values.shape):
        moved[index] = values[index] + step
        upper = evaluate(name, moved)
        moved[index] = values[index] - step
        lower = evaluate(name, moved)
        moved[index] = values[index]
        gradient[index] = (upper - lower) / (2 * step)
    return gradient


def _compare(
    name: str, analytic: np.ndarray, numerical: np.ndarray, rtol: float, atol: float
) -> str | None:
    """None where every element agrees; else a line naming ``name`` and its worst element."""
    with np.errstate(invalid="ignore"):
        excess = np.abs(analytic - numerical) - (atol + rtol * np.abs(numerical))
    excess = np.where(np.isnan(excess), np.inf, excess)
    worst = np.unravel_index(int(np.argmax(excess)), excess.shape)
    if excess[worst] <= 0:
        return None
    index = tuple(int(i) for i in worst)
    return (
        f"  {name}: worst at index {index}: analytic {float(analytic[worst])!r}, numerical "
        f"{float(numerical[worst])!r}; tolerance atol + rtol * |numerical| = {atol:g} + {rtol:g} * "
        f"{abs(numerical[worst]):.6g}"
    )
