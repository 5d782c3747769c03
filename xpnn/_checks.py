"""Argument checks shared by the public constructors: each names the argument it refuses."""

from __future__ import annotations

import math
import numbers
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
