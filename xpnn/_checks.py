"""Argument checks shared by the public classes: each names the argument it refuses."""

from __future__ import annotations

import math
import numbers
import weakref
from typing import Any


def positive_int(value: Any, argument: str) -> int:
    """``value`` as an int >= 1, or a ValueError/TypeError that names ``argument``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{argument} must be a positive integer; got {value!r}")
    if value < 1:
        raise ValueError(f"{argument} must be a positive integer; got {value!r}")
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
        raise TypeError(f"{argument} must be a real number; got {value!r}")
    value = float(value)
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if math.isnan(value) or too_low or too_high:
        left = "(" if low_open else "["
        right = ")" if high_open or high == math.inf else "]"
        raise ValueError(f"{argument} must be in {left}{low:g}, {high:g}{right}; got {value!r}")
    return value


class Part:
    """A part of a model (a layer, its loss, optimizer or metric), which belongs to at most one
    model at a time: a model builds it on its backend and dtype and keeps state in it.

    The part knows its model by a weak reference: a model that is gone lets it go.
    """

    _model_ref: weakref.ref | None = None

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
