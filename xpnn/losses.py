"""Losses: per-sample values forward, their gradient backward."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._checks import Part, ensure_numbers, host_numbers, same_shape
from .activations import Sigmoid, Softmax
from .backends import Backend, get_backend

__all__ = [
    "BinaryCrossentropy",
    "CategoricalCrossentropy",
    "Loss",
    "MeanAbsoluteError",
    "MeanSquaredError",
    "SoftmaxCategoricalCrossentropy",
]

EPSILON = 1e-7


def _check_indices(labels: np.ndarray, classes: int) -> None:
    """ValueError naming y_true unless the host ``labels`` are whole numbers in [0, classes)."""
    if labels.size == 0:
        return
    if labels.dtype.kind == "f" and not np.all(labels == np.floor(labels)):
        raise ValueError("y_true holds class indices, which must be whole numbers")
    low, high = labels.min(), labels.max()
    if low < 0 or high >= classes:
        raise ValueError(
            f"y_true holds class indices in [{low:g}, {high:g}] but the predictions have "
            f"{classes} classes: indices must lie in [0, {classes - 1}]"
        )


class Loss(Part):
    """Base of every loss: ``forward`` gives per-sample losses, ``calculate`` their mean."""

    #: True where targets are class labels (checked to lie in [0, classes) before they move).
    categorical = False
    #: The output layer the loss needs, None for any; ``Model.finalize`` checks it.
    output_layer: type | None = None
    #: The closed interval its float targets must lie in.
    target_range: tuple[float, float] = (-math.inf, math.inf)
    #: How a sample's loss grows with the distance between prediction and target, as a power
    #: (2: squares); 0 where it is bounded. A model checks that the loss summed over the
    #: training data can be held in its dtype.
    growth = 0
    #: What else to use, appended to the message when the output layer does not fit.
    _otherwise = ""

    def output_problem(self, layer: Any) -> str | None:
        """Why ``layer`` cannot be this loss's output layer (and what to change), or None."""
        if self.output_layer is None or isinstance(layer, self.output_layer):
            return None
        need = self.output_layer.__name__
        return (
            f"{type(self).__name__} needs a {need} output layer; got {type(layer).__name__}: "
            f"end the model with {need}(){self._otherwise}"
        )

    def __init__(self, *, backend: str | Backend = "numpy", dtype: Any = None) -> None:
        self.backend = get_backend(backend, dtype)

    def build(self, backend: Backend) -> None:
        """Move onto ``backend``."""
        self.backend = backend

    def calculate(self, output: Any, y: Any) -> Any:
        """The mean loss over the samples, as a 0-d array on the device."""
        return self.backend.xp.mean(self.forward(output, y))

    def regularization_loss(self, layer: Any) -> Any:
        """The penalty of ``layer``'s regularizers (zero for a layer without them)."""
        if getattr(layer, "regularized", False):
            return layer.regularization_loss()
        return self.backend.zeros(())

    def _predictions(self, y_pred: Any, argument: str) -> Any:
        """Predictions (or ``backward``'s ``dvalues``) on the device in the float dtype, as a
        layer takes its inputs, and 2-D (samples, outputs); errors name ``argument``."""
        y_pred = ensure_numbers(self.backend, y_pred, argument)
        if y_pred.ndim != 2:
            raise ValueError(
                f"{argument} must be 2-D (samples, outputs); got shape {tuple(y_pred.shape)}"
            )
        return y_pred

    def _targets(self, y_pred: Any, y_true: Any, argument: str = "y_pred") -> tuple[Any, Any]:
        """Predictions and float targets of the same shape, on the device."""
        y_pred = self._predictions(y_pred, argument)
        y_true = ensure_numbers(self.backend, y_true, "y_true")
        same_shape(y_true, y_pred.shape, "y_true", argument)
        return y_pred, y_true

    def _labels(
        self, y_pred: Any, y_true: Any, argument: str = "y_pred", *, values: bool = True
    ) -> tuple[Any, Any]:
        """Predictions and class labels that fit them, on the device: indices (1-D, one per
        sample) or rows of probabilities (2-D, shaped as the predictions).

        With ``values``, indices in host memory are checked to be whole numbers in range
        before they move (a GPU would wrap one out of range without a word, NumPy would take
        -1 as the last class); indices already on a device are not read. A model's training
        step passes ``values=False``: its labels were checked once, before the loop.
        """
        y_pred = self._predictions(y_pred, argument)
        own = self.backend.is_own(y_true)
        if not own:
            self.backend.refuse_foreign(y_true, "y_true")
            y_true = host_numbers(y_true, "y_true")
        elif y_true.dtype != self.backend.index_dtype and not self.backend.xp.isdtype(
            y_true.dtype, ("integral", "real floating")
        ):  # a training step's labels are indices: isdtype, slow, is skipped for them
            raise TypeError(f"y_true must hold real numbers; got dtype {y_true.dtype}")
        if values and y_true.ndim == 1 and (not own or self.backend.on_host):
            _check_indices(y_true, y_pred.shape[1])
        y_true = self.backend.ensure_labels(y_true)
        # Compared inline, as a training step passes here: same_shape only for the message.
        if y_true.ndim == 1 and y_true.shape[0] != y_pred.shape[0]:
            same_shape(y_true, y_pred.shape[:1], "y_true (class indices)", f"{argument}[:, 0]")
        if y_true.ndim != 1 and y_true.shape != y_pred.shape:
            same_shape(y_true, y_pred.shape, "y_true", argument)
        return y_pred, y_true


class CategoricalCrossentropy(Loss):
    """``-log`` of the probability given to the true class; labels sparse (1-D) or one-hot (2-D).

    Predictions are clipped to ``[1e-7, 1 - 1e-7]`` so the log is finite.
    """

    categorical = True
    output_layer = Softmax
    _otherwise = (
        ", or use BinaryCrossentropy with a Sigmoid output for independent yes/no outputs, "
        "MeanSquaredError for a regression"
    )

    def forward(self, y_pred: Any, y_true: Any) -> Any:
        """Per-sample losses: ``-log`` of the clipped probability of the true class."""
        xp = self.backend.xp
        y_pred, y_true = self._labels(y_pred, y_true)
        y_pred_clipped = xp.clip(y_pred, EPSILON, 1 - EPSILON)
        if y_true.ndim == 1:
            correct_confidences = self.backend.take_labels(y_pred_clipped, y_true)
        else:
            correct_confidences = xp.sum(y_pred_clipped * y_true, axis=1)
        return -xp.log(correct_confidences)

    def backward(self, dvalues: Any, y_true: Any) -> Any:
        """Gradient with respect to the predicted probabilities: ``-y_true / y_pred / n``."""
        dvalues, y_true = self._labels(dvalues, y_true, "dvalues")
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
        """Move onto ``backend``, with the softmax and loss inside."""
        self.backend = backend
        self.activation.backend = backend
        self.loss.backend = backend

    def forward(self, inputs: Any, y_true: Any) -> Any:
        """Softmax of ``inputs`` into ``self.output``; returns the mean loss."""
        inputs, y_true = self._labels(inputs, y_true, "inputs")
        self.output = self.activation.forward(inputs)
        loss_sum, _, _ = self.backend.softmax_crossentropy(
            self.output, y_true, EPSILON, gradient=False
        )
        return loss_sum / self.output.shape[0]

    def backward(self, dvalues: Any, y_true: Any) -> Any:
        """Gradient with respect to the softmax inputs; ``dvalues`` are the softmax outputs."""
        dvalues, y_true = self._labels(dvalues, y_true, "dvalues")
        self.backward_with_sums(dvalues, y_true)
        return self.dinputs

    def backward_with_sums(self, dvalues: Any, y_true: Any) -> tuple[Any, Any]:
        """``backward``, and from the same pass over the softmax outputs ``dvalues`` the
        summed loss and the right predictions (0-d arrays on the device), which a training
        step needs too: ``(softmax - one_hot) / n`` into ``self.dinputs``. Shapes are
        checked, not the labels' values: a model checked them before its training loop.
        """
        dvalues, y_true = self._labels(dvalues, y_true, "dvalues", values=False)
        # One compiled pass where numba runs the NumPy backend; Backend.softmax_crossentropy
        # is the reference.
        loss_sum, correct, self.dinputs = self.backend.softmax_crossentropy(
            dvalues, y_true, EPSILON
        )
        return loss_sum, correct


class BinaryCrossentropy(Loss):
    """Cross-entropy of independent yes/no outputs (sigmoid), averaged over the outputs.

    Predictions are clipped to ``[1e-7, 1 - 1e-7]`` so neither log is infinite. Targets are
    probabilities, in [0, 1].
    """

    output_layer = Sigmoid
    target_range = (0.0, 1.0)
    _otherwise = ", or use CategoricalCrossentropy with a Softmax output for one class per sample"

    def forward(self, y_pred: Any, y_true: Any) -> Any:
        """Per-sample losses, averaged over the outputs."""
        xp = self.backend.xp
        y_pred, y_true = self._targets(y_pred, y_true)
        clipped = xp.clip(y_pred, EPSILON, 1 - EPSILON)
        sample_losses = -(y_true * xp.log(clipped) + (1 - y_true) * xp.log(1 - clipped))
        return xp.mean(sample_losses, axis=-1)

    def backward(self, dvalues: Any, y_true: Any) -> Any:
        """Gradient with respect to the predicted probabilities."""
        dvalues, y_true = self._targets(dvalues, y_true, "dvalues")
        samples, outputs = dvalues.shape
        clipped = self.backend.xp.clip(dvalues, EPSILON, 1 - EPSILON)
        self.dinputs = -(y_true / clipped - (1 - y_true) / (1 - clipped)) / outputs / samples
        return self.dinputs


class MeanSquaredError(Loss):
    """Mean of squared differences over the outputs: the usual regression loss (L2)."""

    growth = 2

    def forward(self, y_pred: Any, y_true: Any) -> Any:
        """Per-sample mean of ``(y_true - y_pred) ** 2``."""
        y_pred, y_true = self._targets(y_pred, y_true)
        return self.backend.xp.mean((y_true - y_pred) ** 2, axis=-1)

    def backward(self, dvalues: Any, y_true: Any) -> Any:
        """Gradient: ``-2 * (y_true - y_pred) / outputs / samples``."""
        dvalues, y_true = self._targets(dvalues, y_true, "dvalues")
        samples, outputs = dvalues.shape
        self.dinputs = -2 * (y_true - dvalues) / outputs / samples
        return self.dinputs


class MeanAbsoluteError(Loss):
    """Mean of absolute differences over the outputs (L1), less swayed by outliers.

    Its gradient is ``sign(y_pred - y_true)``: the book writes ``sign(y_true - y_pred)``, the
    opposite sign, which the numerical gradient check refutes.
    """

    growth = 1

    def forward(self, y_pred: Any, y_true: Any) -> Any:
        """Per-sample mean of ``|y_true - y_pred|``."""
        y_pred, y_true = self._targets(y_pred, y_true)
        return self.backend.xp.mean(self.backend.xp.abs(y_true - y_pred), axis=-1)

    def backward(self, dvalues: Any, y_true: Any) -> Any:
        """Gradient: ``sign(y_pred - y_true) / outputs / samples``."""
        dvalues, y_true = self._targets(dvalues, y_true, "dvalues")
        samples, outputs = dvalues.shape
        self.dinputs = self.backend.xp.sign(dvalues - y_true) / outputs / samples
        return self.dinputs
