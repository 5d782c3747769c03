"""Accuracy metrics: how often predictions match the targets."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ._checks import POSITIVE, HasSettings, Part, Settings, real, same_shape, shown
from .activations import Sigmoid, Softmax
from .backends import Backend, get_backend, to_numpy

__all__ = ["Accuracy", "CategoricalAccuracy", "RegressionAccuracy"]


class Accuracy(HasSettings, Part):
    """Base of every metric: ``compare`` marks each sample right or wrong."""

    #: True where every target must be 0 or 1 (each output compared with its 0/1 target).
    binary_targets = False

    def __init__(self, *, backend: str | Backend = "numpy", dtype: Any = None) -> None:
        self.backend = get_backend(backend, dtype)

    def build(self, backend: Backend) -> None:
        """Move onto ``backend``."""
        self.backend = backend

    def output_problem(self, layer: Any, loss: Any) -> str | None:
        """Why this metric cannot judge a model whose output layer is ``layer`` and whose loss
        is ``loss`` (what to change), or None where it can."""
        return None

    def init(self, y: Any) -> None:
        """Prepare for the targets of a training run (the regression metric sets its precision)."""

    def calculate(self, predictions: Any, y: Any) -> Any:
        """The fraction of samples predicted right, as a 0-d array on the device."""
        xp = self.backend.xp
        return xp.mean(xp.astype(self.compare(predictions, y), self.backend.dtype))


class CategoricalAccuracy(Accuracy):
    """Predicted class against sparse labels or the argmax of one-hot labels.

    With ``binary=True`` (sigmoid outputs) each output is compared with its 0/1 target.
    """

    def __init__(
        self, *, binary: bool = False, backend: str | Backend = "numpy", dtype: Any = None
    ) -> None:
        super().__init__(backend=backend, dtype=dtype)
        if not isinstance(binary, bool):
            raise TypeError(f"binary must be True or False; got {shown(binary)}")
        self.binary = binary

    def output_problem(self, layer: Any, loss: Any) -> str | None:
        """Sparse or one-hot classes need a Softmax output; binary, a Sigmoid one."""
        name = type(layer).__name__
        if self.binary and not isinstance(layer, Sigmoid):
            other = (
                "use CategoricalAccuracy() for a Softmax output"
                if isinstance(layer, Softmax)
                else "end the model with Sigmoid(), or use RegressionAccuracy() for a regression"
            )
            return (
                "CategoricalAccuracy(binary=True) compares each output, thresholded at 0.5, "
                f"with its 0/1 target: it needs a Sigmoid output layer; got {name}: {other}"
            )
        if not self.binary and isinstance(layer, Sigmoid):
            return (
                "CategoricalAccuracy() takes the most probable class of a Softmax output; with "
                "a Sigmoid output layer use CategoricalAccuracy(binary=True)"
            )
        if not self.binary and not isinstance(layer, Softmax):
            return (
                "CategoricalAccuracy() takes the most probable class of a Softmax output layer; "
                f"got {name}: end the model with Softmax(), or use RegressionAccuracy() for a "
                "regression"
            )
        return None

    @property
    def binary_targets(self) -> bool:
        """True with ``binary``: 0/1 predictions are compared with 0/1 targets."""
        return self.binary

    def compare(self, predictions: Any, y: Any) -> Any:
        """True where the predicted class is the label (or, binary, where each output matches)."""
        if self.binary:
            y = self.backend.ensure(y, "y")
        else:
            y = self.backend.ensure_labels(y, "y")
            if y.ndim == 2:
                y = self.backend.xp.argmax(y, axis=1)
        if y.shape != predictions.shape:  # NumPy would broadcast, or fail without naming y
            same_shape(y, predictions.shape, "y", "the prediction array")
        return predictions == y


class RegressionAccuracy(Accuracy):
    """A prediction is right when within ``precision`` of its target.

    ``precision`` defaults to ``std(y) / 250`` of the first training targets, as the book does.
    """

    settings: ClassVar[Settings] = {"precision": POSITIVE}
    from_data: ClassVar[tuple[str, ...]] = ("precision",)

    def __init__(
        self,
        precision: float | None = None,
        *,
        backend: str | Backend = "numpy",
        dtype: Any = None,
    ) -> None:
        super().__init__(backend=backend, dtype=dtype)
        if precision is not None:
            precision = real(precision, "precision", **POSITIVE)
        self.precision = precision

    def output_problem(self, layer: Any, loss: Any) -> str | None:
        """Values, not classes: no categorical loss, no Softmax or Sigmoid output layer."""
        if loss.categorical:
            return (
                f"RegressionAccuracy compares values, but {type(loss).__name__} learns classes: "
                "use CategoricalAccuracy()"
            )
        if isinstance(layer, (Softmax, Sigmoid)):
            binary = isinstance(layer, Sigmoid)
            instead = f"CategoricalAccuracy({'binary=True' if binary else ''})"
            return (
                f"RegressionAccuracy compares output values with targets, but a "
                f"{type(layer).__name__} output layer predicts classes: use {instead}"
            )
        return None

    def init(self, y: Any) -> None:
        """Set the precision from the first training targets, unless it was given."""
        if self.precision is None:
            xp = self.backend.xp
            precision = float(to_numpy(xp.std(self.backend.ensure(y, "y")))) / 250
            dtype = self.backend.dtype_name
            with np.errstate(under="ignore"):
                held = float(np.asarray(precision, dtype=dtype))
            if not held > 0:  # nothing would ever be right
                raise ValueError(
                    f"y: RegressionAccuracy's precision defaults to std(y) / 250, which is "
                    f"{precision:g} ({held:g} in {dtype}): the targets are (nearly) constant; give "
                    "RegressionAccuracy(precision=...)"
                )
            self.precision = precision

    def compare(self, predictions: Any, y: Any) -> Any:
        """True where the prediction is within ``precision`` of its target."""
        if self.precision is None:
            raise RuntimeError("RegressionAccuracy has no precision yet: call init(y) first")
        y = self.backend.ensure(y, "y")
        if y.shape != predictions.shape:
            same_shape(y, predictions.shape, "y", "the prediction array")
        return self.backend.xp.abs(predictions - y) < self.precision
