"""Activation functions: forward, backward, and how their outputs become predictions."""

from __future__ import annotations

from typing import Any

from .layers import Layer

__all__ = ["ReLU", "Softmax"]


class ReLU(Layer):
    """``max(0, x)``; the gradient passes where the input was positive."""

    def forward(self, inputs: Any, training: bool = False) -> Any:
        self.inputs = self.backend.ensure(inputs)
        self.output = self.backend.xp.maximum(self.inputs, 0.0)
        return self.output

    def backward(self, dvalues: Any) -> Any:
        dvalues = self.backend.ensure(dvalues, "dvalues")
        self.dinputs = self.backend.xp.where(self.inputs > 0, dvalues, 0.0)
        return self.dinputs


class Softmax(Layer):
    """Normalised exponentials of each row, shifted by its maximum so ``exp`` cannot overflow."""

    def forward(self, inputs: Any, training: bool = False) -> Any:
        xp = self.backend.xp
        inputs = self.backend.ensure(inputs)
        exp_values = xp.exp(inputs - xp.max(inputs, axis=1, keepdims=True))
        self.output = exp_values / xp.sum(exp_values, axis=1, keepdims=True)
        return self.output

    def backward(self, dvalues: Any) -> Any:
        # Each row's Jacobian, diag(s) - s s^T, applied to its gradient: s * (d - s . d).
        # The book loops over samples; this is the same product for all rows at once.
        xp = self.backend.xp
        dvalues = self.backend.ensure(dvalues, "dvalues")
        s = self.output
        self.dinputs = s * (dvalues - xp.sum(dvalues * s, axis=1, keepdims=True))
        return self.dinputs

    def predictions(self, outputs: Any) -> Any:
        """The most probable class of each row."""
        return self.backend.xp.argmax(outputs, axis=1)
