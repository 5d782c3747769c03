"""Activation functions: forward, backward, and how their outputs become predictions."""

from __future__ import annotations

import math
from typing import Any, ClassVar

from ._checks import NON_NEGATIVE, Settings, ensure_numbers, real
from .backends import Backend
from .layers import Layer

__all__ = ["LeakyReLU", "Linear", "ReLU", "Sigmoid", "Softmax", "Tanh"]


class ReLU(Layer):
    """``max(0, x)``; the gradient passes where the input was positive."""

    output_range = (0.0, math.inf)

    def forward(self, inputs: Any, training: bool = False) -> Any:
        """max(0, inputs) into ``self.output``."""
        self.inputs = self._inputs(inputs)
        self.output = self.backend.relu(self.inputs)
        return self.output

    def backward(self, dvalues: Any) -> Any:
        """The gradient where the input was positive, 0 elsewhere."""
        # The book zeroes the gradient where inputs <= 0, by fancy-index assignment; keeping the
        # gradient where the mask holds does the same in one array operation on every library
        # (one compiled pass where numba runs the NumPy backend).
        dvalues = self._gradient(dvalues)
        self.dinputs = self.backend.relu_backward(dvalues, self.inputs)
        return self.dinputs


class Softmax(Layer):
    """Normalised exponentials of each row, shifted by its maximum so ``exp`` cannot overflow."""

    output_range = (0.0, 1.0)

    def forward(self, inputs: Any, training: bool = False) -> Any:
        """Row-wise probabilities into ``self.output``."""
        # exp(inputs - row maximum) / row sum: see Backend.softmax, the reference.
        inputs = self._inputs(inputs)
        if inputs.ndim != 2:
            raise ValueError(
                f"inputs must be 2-D (samples, classes); got shape {tuple(inputs.shape)}"
            )
        self.output = self.backend.softmax(inputs)
        return self.output

    def backward(self, dvalues: Any) -> Any:
        """The gradient through each row's Jacobian."""
        # Each row's Jacobian, diag(s) - s s^T, applied to its gradient: s * (d - s . d).
        # The book loops over samples; this is the same product for all rows at once.
        xp = self.backend.xp
        dvalues = self._gradient(dvalues)
        s = self.output
        self.dinputs = s * (dvalues - xp.sum(dvalues * s, axis=1, keepdims=True))
        return self.dinputs

    def predictions(self, outputs: Any) -> Any:
        """The most probable class of each row."""
        if not self.backend.is_own(outputs):  # host data (a list, say): checked, moved
            outputs = ensure_numbers(self.backend, outputs, "outputs")
        return self.backend.xp.argmax(outputs, axis=1)


class Sigmoid(Layer):
    """``1 / (1 + exp(-x))``: independent probabilities, for binary outputs."""

    output_range = (0.0, 1.0)

    def forward(self, inputs: Any, training: bool = False) -> Any:
        """``1 / (1 + exp(-inputs))`` into ``self.output``."""
        self.inputs = self._inputs(inputs)
        self.output = 1 / (1 + self.backend.xp.exp(-self.inputs))
        return self.output

    def backward(self, dvalues: Any) -> Any:
        """``dvalues * (1 - output) * output``."""
        dvalues = self._gradient(dvalues)
        self.dinputs = dvalues * (1 - self.output) * self.output
        return self.dinputs

    def predictions(self, outputs: Any) -> Any:
        """1 where the probability is above 0.5, else 0 (in the float dtype, like the targets)."""
        if not self.backend.is_own(outputs):  # host data (a list, say): checked, moved
            outputs = ensure_numbers(self.backend, outputs, "outputs")
        return self.backend.xp.astype(outputs > 0.5, self.backend.dtype)


class Linear(Layer):
    """The identity: the output layer of a regression."""

    def forward(self, inputs: Any, training: bool = False) -> Any:
        """The inputs, unchanged, as ``self.output``."""
        self.inputs = self._inputs(inputs)
        self.output = self.inputs
        return self.output

    def backward(self, dvalues: Any) -> Any:
        """The gradient, unchanged."""
        self.dinputs = self._gradient(dvalues)
        return self.dinputs


class Tanh(Layer):
    """The hyperbolic tangent, a zero-centred squashing function (beyond the book)."""

    output_range = (-1.0, 1.0)

    def forward(self, inputs: Any, training: bool = False) -> Any:
        """``tanh(inputs)`` into ``self.output``."""
        self.inputs = self._inputs(inputs)
        self.output = self.backend.xp.tanh(self.inputs)
        return self.output

    def backward(self, dvalues: Any) -> Any:
        """``dvalues * (1 - output ** 2)``."""
        dvalues = self._gradient(dvalues)
        self.dinputs = dvalues * (1 - self.output * self.output)
        return self.dinputs


class LeakyReLU(Layer):
    """``x`` where positive, ``alpha * x`` elsewhere, so no unit goes silent (beyond the book)."""

    settings: ClassVar[Settings] = {"alpha": NON_NEGATIVE}

    def __init__(
        self, alpha: float = 0.01, *, backend: str | Backend = "numpy", dtype: Any = None
    ) -> None:
        self.alpha = real(alpha, "alpha", **NON_NEGATIVE)
        super().__init__(backend=backend, dtype=dtype)

    def forward(self, inputs: Any, training: bool = False) -> Any:
        """``inputs`` where positive, ``alpha * inputs`` elsewhere."""
        self.inputs = self._inputs(inputs)
        self.output = self.backend.xp.where(self.inputs > 0, self.inputs, self.alpha * self.inputs)
        return self.output

    def backward(self, dvalues: Any) -> Any:
        """The gradient where the input was positive, ``alpha`` times it elsewhere."""
        dvalues = self._gradient(dvalues)
        self.dinputs = self.backend.xp.where(self.inputs > 0, dvalues, self.alpha * dvalues)
        return self.dinputs

    @property
    def output_range(self) -> tuple[float, float]:
        """Non-negative with ``alpha`` 0 (a ReLU), else any real number."""
        return (0.0 if self.alpha == 0 else -math.inf, math.inf)
