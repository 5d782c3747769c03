"""Accuracy metrics: how often predictions match the targets."""

from __future__ import annotations

from typing import Any

from .backend import Backend, get_backend

__all__ = ["Accuracy", "CategoricalAccuracy"]


class Accuracy:
    """Base of every metric: ``compare`` marks each sample right or wrong."""

    def __init__(self, *, backend: str | Backend = "numpy", dtype: Any = None) -> None:
        self.backend = get_backend(backend, dtype)

    def build(self, backend: Backend) -> None:
        """Move onto ``backend``."""
        self.backend = backend

    def calculate(self, predictions: Any, y: Any) -> Any:
        """The fraction of samples predicted right, as a 0-d array on the device."""
        xp = self.backend.xp
        return xp.mean(xp.astype(self.compare(predictions, y), self.backend.dtype))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class CategoricalAccuracy(Accuracy):
    """Predicted class (argmax) against sparse labels, or the argmax of one-hot labels."""

    def compare(self, predictions: Any, y: Any) -> Any:
        y = self.backend.ensure_labels(y, "y")
        if y.ndim == 2:
            y = self.backend.xp.argmax(y, axis=1)
        return predictions == y
