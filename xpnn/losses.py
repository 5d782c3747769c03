"""Losses: per-sample values forward, their gradient backward."""

from __future__ import annotations

from typing import Any

from .activations import Softmax
from .backend import Backend, get_backend

__all__ = ["CategoricalCrossentropy", "Loss", "SoftmaxCategoricalCrossentropy"]

EPSILON = 1e-7


class Loss:
    """Base of every loss: ``forward`` gives per-sample losses, ``calculate`` their mean."""

    #: True where targets are class labels (checked to lie in [0, classes) before they move).
    categorical = False

    def __init__(self, *, backend: str | Backend = "numpy", dtype: Any = None) -> None:
        self.backend = get_backend(backend, dtype)

    def build(self, backend: Backend) -> None:
        """Move onto ``backend``."""
        self.backend = backend

    def calculate(self, output: Any, y: Any) -> Any:
        """The mean loss over the samples, as a 0-d array on the device."""
        return self.backend.xp.mean(self.forward(output, y))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class CategoricalCrossentropy(Loss):
    """``-log`` of the probability given to the true class; labels sparse (1-D) or one-hot (2-D).

    Predictions are clipped to ``[1e-7, 1 - 1e-7]`` so the log is finite.
    """

    categorical = True

    def forward(self, y_pred: Any, y_true: Any) -> Any:
        xp = self.backend.xp
        y_pred = self.backend.ensure(y_pred, "y_pred")
        y_true = self.backend.ensure_labels(y_true)
        y_pred_clipped = xp.clip(y_pred, EPSILON, 1 - EPSILON)
        if y_true.ndim == 1:
            correct_confidences = xp.take_along_axis(y_pred_clipped, y_true[:, None], axis=1)[:, 0]
        else:
            correct_confidences = xp.sum(y_pred_clipped * y_true, axis=1)
        return -xp.log(correct_confidences)

    def backward(self, dvalues: Any, y_true: Any) -> Any:
        dvalues = self.backend.ensure(dvalues, "dvalues")
        y_true = self.backend.ensure_labels(y_true)
        samples = dvalues.shape[0]
        if y_true.ndim == 1:
            y_true = self.backend.one_hot(y_true, dvalues.shape[1])
        self.dinputs = -y_true / dvalues / samples
        return self.dinputs


class SoftmaxCategoricalCrossentropy(Loss):
    """Softmax followed by categorical cross-entropy, with their combined gradient.

    The gradient of the pair with respect to the softmax inputs is ``(softmax - one_hot) / n``:
    one subtraction instead of two Jacobians.
    """

    categorical = True

    def __init__(self, *, backend: str | Backend = "numpy", dtype: Any = None) -> None:
        super().__init__(backend=backend, dtype=dtype)
        self.activation = Softmax(backend=self.backend)
        self.loss = CategoricalCrossentropy(backend=self.backend)

    def build(self, backend: Backend) -> None:
        self.backend = backend
        self.activation.backend = backend
        self.loss.backend = backend

    def forward(self, inputs: Any, y_true: Any) -> Any:
        """Softmax of ``inputs`` into ``self.output``; returns the mean loss."""
        self.output = self.activation.forward(inputs)
        return self.loss.calculate(self.output, y_true)

    def backward(self, dvalues: Any, y_true: Any) -> Any:
        """Gradient with respect to the softmax inputs; ``dvalues`` are the softmax outputs."""
        dvalues = self.backend.ensure(dvalues, "dvalues")
        y_true = self.backend.ensure_labels(y_true)
        if y_true.ndim == 1:
            y_true = self.backend.one_hot(y_true, dvalues.shape[1])
        self.dinputs = (dvalues - y_true) / dvalues.shape[0]
        return self.dinputs
