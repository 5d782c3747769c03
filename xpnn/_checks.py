"""Argument checks shared by the public classes: each names the argument it refuses."""

from __future__ import annotations

import inspect
import math
import numbers
import weakref
from functools import cache
from typing import Any, ClassVar

import numpy as np

#: Float settings, each with its bounds for ``real`` (see ``HasSettings``).
Settings = dict[str, dict[str, Any]]

#: Bounds for ``real``: a positive number, a non-negative one, a fraction in [0, 1).
POSITIVE: dict[str, Any] = {"low": 0.0, "low_open": True}
NON_NEGATIVE: dict[str, Any] = {"low": 0.0}
FRACTION: dict[str, Any] = {"low": 0.0, "high": 1.0, "high_open": True}


def host_numbers(a: Any, argument: str) -> np.ndarray:
    """Host data (a NumPy array, a list, an array-like) as a NumPy array of real numbers, or a
    TypeError naming ``argument``: NumPy would fail deep inside on text or ragged lists, and
    cast complex numbers, booleans or objects into garbage."""
    try:
        array = np.asarray(a)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"{argument} must be an array of real numbers; got {type(a).__name__} ({error})"
        ) from error
    if array.dtype.kind not in "iuf":
        raise TypeError(f"{argument} must hold real numbers; got dtype {array.dtype}")
    return array


def ensure_numbers(backend: Any, a: Any, argument: str) -> Any:
    """``a`` as ``backend.ensure`` makes it (host data moves, another dtype is cast, another
    device's array is refused; a backend that computes otherwise, such as ``xpnn.book``'s,
    overrides ``ensure``), refusing what holds no real numbers with a TypeError naming
    ``argument``."""
    if backend.is_own(a):
        if a.dtype != backend.dtype and not backend.xp.isdtype(
            a.dtype, ("integral", "real floating")
        ):
            raise TypeError(f"{argument} must hold real numbers; got dtype {a.dtype}")
        return backend.ensure(a, argument)
    backend.refuse_foreign(a, argument)
    return backend.ensure(host_numbers(a, argument), argument)


def same_shape(a: Any, shape: tuple[int, ...], argument: str, what: str) -> None:
    """ValueError naming ``argument`` unless ``a`` has ``shape``, the shape of ``what``."""
    if tuple(a.shape) != tuple(shape):
        raise ValueError(
            f"{argument} has shape {tuple(a.shape)} but {what} has shape {tuple(shape)}; "
            "they must match"
        )


def shown(value: Any, limit: int = 80) -> str:
    """``repr(value)`` for an error message, kept short: an array (of any library) by its
    type, shape and dtype, anything else cut at ``limit`` characters."""
    shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
    if isinstance(shape, tuple) and shape and dtype is not None:  # torch's Size is a tuple
        return f"{type(value).__name__} of shape {tuple(int(n) for n in shape)} and dtype {dtype}"
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def seed_value(seed: Any, argument: str = "seed") -> int | None:
    """``seed`` as None or an int >= 0 (what a saved model records), or a TypeError or
    ValueError naming ``argument``: NumPy's own errors do not name it."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{argument} must be None or a non-negative integer; got {shown(seed)}")
    if seed < 0:
        raise ValueError(f"{argument} must be None or a non-negative integer; got {seed}")
    return int(seed)


def positive_int(value: Any, argument: str) -> int:
    """``value`` as an int >= 1, or a ValueError/TypeError that names ``argument``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{argument} must be a positive integer; got {shown(value)}")
    if value < 1:
        raise ValueError(f"{argument} must be a positive integer; got {shown(value)}")
    return int(value)


def real(
    value: Any,
    argument: str,
    *,
    low: float,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` as a finite float within the bounds, or an error that names ``argument``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{argument} must be a real number; got {shown(value)}")
    value = float(value)
    if not _within(value, low, high, low_open, high_open):
        raise ValueError(
            f"{argument} must be a finite number in {_interval(low, high, low_open, high_open)}; "
            f"got {shown(value)}"
        )
    return value


def _within(
    value: float,
    low: float,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
) -> bool:
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    return math.isfinite(value) and not too_low and not too_high


def _interval(
    low: float, high: float = math.inf, low_open: bool = False, high_open: bool = False
) -> str:
    left = "(" if low_open else "["
    right = ")" if high_open or high == math.inf else "]"
    return f"{left}{low:g}, {high:g}{right}"


class HasSettings:
    """Something whose float settings enter the model's array arithmetic (a learning rate, an
    epsilon, a regularizer, ...).

    ``settings`` maps each of them to the bounds its constructor checks with ``real``. Python
    floats are float64, but the arithmetic runs in the model's dtype: ``check_settings`` checks
    each setting again as that dtype holds it (1e300 is inf in float32, 1e-50 is 0, 0.99999999
    is 1), so a setting the dtype cannot hold is refused before training rather than wiping out
    the parameters.
    """

    settings: ClassVar[Settings] = {}

    def check_settings(self, dtype: str) -> None:
        """ValueError naming the setting if one is out of its bounds, as given or in ``dtype``."""
        owner = type(self).__name__
        for name, bounds in self.settings.items():
            value = getattr(self, name)
            if value is None:  # RegressionAccuracy's precision, until the first training data
                continue
            value = real(value, f"{owner} {name}", **bounds)  # it may have been changed since
            with np.errstate(all="ignore"):
                held = float(np.asarray(value, dtype=dtype))
            if not _within(held, **bounds):
                advice = " (or use dtype='float64')" if dtype == "float32" else ""
                raise ValueError(
                    f"{owner} {name}={value!r} is {held!r} in {dtype}, the model's dtype, but "
                    f"{name} must be in {_interval(**bounds)} there: choose another "
                    f"{name}{advice}"
                )


class Part:
    """A part of a model (a layer, its loss, optimizer or metric), which belongs to at most one
    model at a time: a model builds it on its backend and dtype and keeps state in it.

    The part knows its model by a weak reference: a model that is gone lets it go.
    """

    _model_ref: weakref.ref | None = None
    #: Settings a part takes from the training data when none is given (the regression
    #: metric's precision): in shard mode each rank has its own, so the ranks compare the rest.
    from_data: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def arguments(cls) -> dict[str, bool]:
        """The constructor's settings, each mapped to whether it is required: what rebuilds the
        part, not where it runs (``backend``, ``dtype``, ``seed``)."""
        return _constructor_settings(cls)

    def config(self) -> dict[str, Any]:
        """This part's settings by name, as its constructor takes them: what a saved model
        records of it (``type(part)(**part.config())`` builds its like)."""
        return {name: getattr(self, name, None) for name in self.arguments()}

    def __repr__(self) -> str:
        """The class and every constructor setting, as scikit-learn shows an estimator:
        ``Adam(learning_rate=0.001, decay=0.0, epsilon=1e-07, beta_1=0.9, beta_2=0.999)``."""
        settings = ", ".join(
            f"{name}={value.item() if isinstance(value, np.generic) else value!r}"
            for name, value in self.config().items()
        )
        return f"{type(self).__name__}({settings})"

    def claim(self, model: Any, argument: str) -> None:
        """Make ``model`` this part's model; ValueError naming ``argument`` if it is already in
        ``model`` or in another model."""
        owner = None if self._model_ref is None else self._model_ref()
        if owner is model:
            raise ValueError(
                f"{argument}: this {self!r} is already in the model; add a new one (each layer "
                "keeps its own inputs and outputs for the backward pass)"
            )
        if owner is not None:
            raise ValueError(
                f"{argument}: this {self!r} already belongs to another model, whose backend, "
                f"dtype and state it holds; create a new {type(self).__name__} for this model "
                "(get_parameters and set_parameters copy weights from one model to another)"
            )
        self._model_ref = weakref.ref(model)

    def release(self, model: Any) -> None:
        """Free the part from ``model`` (it left it)."""
        if self._model_ref is not None and self._model_ref() is model:
            self._model_ref = None

    def model_is(self, model: Any) -> bool:
        """True if the part belongs to ``model``."""
        return self._model_ref is not None and self._model_ref() is model


# Constructor arguments that place a part rather than describe it.
_PLACEMENT = frozenset({"self", "backend", "dtype", "seed"})


@cache
def _constructor_settings(cls: type) -> dict[str, bool]:
    parameters = inspect.signature(cls.__init__).parameters.values()
    return {
        p.name: p.default is inspect.Parameter.empty
        for p in parameters
        if p.name not in _PLACEMENT
        and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
