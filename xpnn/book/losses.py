"""The book's losses and accuracies, on xpnn's: ``Loss`` and its four kinds, the combined
softmax and cross-entropy, ``Accuracy``, ``Accuracy_Categorical`` and ``Accuracy_Regression``.

Every chapter's way of calling them works: ``calculate(output, y)`` (the hand-written loops),
``regularization_loss(layer)`` (Chapters 14 to 17), and the final code's
``calculate(output, y, include_regularization=True)``, ``regularization_loss()`` over the
remembered trainable layers, ``calculate_accumulated`` and ``new_pass``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from .. import losses
from .._checks import same_shape
from ..backends import Backend
from ._device import OnDevice, Part, _BookProducts, backend_for, device_array
from .layers import Activation_Softmax

__all__ = [
    "Accuracy",
    "Accuracy_Categorical",
    "Accuracy_Regression",
    "Activation_Softmax_Loss_CategoricalCrossentropy",
    "Loss",
    "Loss_BinaryCrossentropy",
    "Loss_CategoricalCrossentropy",
    "Loss_MeanAbsoluteError",
    "Loss_MeanSquaredError",
]

EPSILON = losses.EPSILON


def _mean(values: Any, dtype: Any = None) -> Any:
    """``np.mean(values)``, on the device for an :class:`OnDevice`."""
    if type(values) is OnDevice:
        xp = values.backend.xp
        array = values.array if dtype is None else xp.astype(values.array, dtype(xp))
        return OnDevice(xp.mean(array), values.backend)
    if type(values) is np.ndarray and values.dtype.kind == "f" and values.size:
        # np.mean's own steps (a pairwise sum, then the division), without its Python layer.
        total = np.add.reduce(values, axis=None)
        return total.dtype.type(total / values.size)
    return np.mean(values)


def _sum(values: Any, dtype: Any = None) -> Any:
    """``np.sum(values)``, on the device for an :class:`OnDevice`."""
    if type(values) is OnDevice:
        xp = values.backend.xp
        array = values.array if dtype is None else xp.astype(values.array, dtype(xp))
        return OnDevice(xp.sum(array), values.backend)
    if type(values) is np.ndarray:
        return np.add.reduce(values, axis=None)
    return np.sum(values)


def _float64(xp: Any) -> Any:
    return xp.float64


def _penalty(layer: Any) -> Any:
    """The book's regularization loss of one layer: 0, or its L1 and L2 terms."""
    inner = getattr(layer, "_layer", None)
    if inner is None:  # a layer of the script's own
        return _penalty_of(layer, np, layer.weights, layer.biases)
    total = _penalty_of(inner, inner.backend.xp, inner.weights, inner.biases)
    return total if isinstance(total, int) else layer._show(total)


def _penalty_of(layer: Any, xp: Any, weights: Any, biases: Any) -> Any:
    total: Any = 0
    for kind, values in (("weight", weights), ("bias", biases)):
        l1 = getattr(layer, f"{kind}_regularizer_l1")
        l2 = getattr(layer, f"{kind}_regularizer_l2")
        if l1 > 0:
            total = total + l1 * xp.sum(xp.abs(values))
        if l2 > 0:
            total = total + l2 * xp.sum(values * values)
    return total


class Loss(Part):
    """The book's common loss: the mean of ``forward``'s sample losses, the regularizers'
    penalty, and sums accumulated over a pass."""

    accumulated_sum: Any = 0
    accumulated_count = 0
    trainable_layers: ClassVar[tuple] = ()

    def regularization_loss(self, layer: Any = None) -> Any:
        """The penalty of ``layer`` (Chapters 14 to 17), or of every remembered trainable layer
        (the final code); 0 where no regularizer is set."""
        chosen = self.trainable_layers if layer is None else [layer]
        total: Any = 0
        for each in chosen:
            total = total + _penalty(each)
        return total

    def remember_trainable_layers(self, trainable_layers: list) -> None:
        """The layers whose penalties ``regularization_loss()`` adds up."""
        self.trainable_layers = trainable_layers

    def calculate(self, output: Any, y: Any, *, include_regularization: bool = False) -> Any:
        """The mean sample loss (and the penalty, with ``include_regularization``); the pass's
        sums grow."""
        sample_losses = self.forward(output, y)
        data_loss = _mean(sample_losses)
        self.accumulated_sum += _sum(sample_losses)
        self.accumulated_count += len(sample_losses)
        if not include_regularization:
            return data_loss
        return data_loss, self.regularization_loss()

    def calculate_accumulated(self, *, include_regularization: bool = False) -> Any:
        """The mean loss over the pass (and the penalty, with ``include_regularization``)."""
        data_loss = self.accumulated_sum / self.accumulated_count
        if not include_regularization:
            return data_loss
        return data_loss, self.regularization_loss()

    def new_pass(self) -> None:
        """Start a pass: zero the accumulated sums."""
        self.accumulated_sum = 0
        self.accumulated_count = 0


class _XpnnLoss(Loss):
    """A book loss computed by an xpnn loss (``_kind``)."""

    _kind: type = losses.Loss

    def __init__(self) -> None:
        super().__init__()
        self._loss = self._kind(backend=backend_for("numpy", "float32"))

    def _bind(self, backend: Backend) -> None:
        self._backend = backend
        self._loss.backend = backend

    def forward(self, y_pred: Any, y_true: Any) -> Any:
        """The sample losses."""
        values = self._take(y_pred, "y_pred")
        return self._show(self._loss.forward(values, device_array(y_true)))

    def backward(self, dvalues: Any, y_true: Any) -> None:
        """The gradient with respect to the predictions, into ``self.dinputs``."""
        values = self._take(dvalues, "dvalues")
        self.dinputs = self._show(self._loss.backward(values, device_array(y_true)))


class Loss_CategoricalCrossentropy(_XpnnLoss):
    """``-log`` of the clipped probability of the true class; sparse or one-hot labels."""

    _kind = losses.CategoricalCrossentropy


class Loss_BinaryCrossentropy(_XpnnLoss):
    """Cross-entropy of independent sigmoid outputs, averaged over the outputs."""

    _kind = losses.BinaryCrossentropy


class Loss_MeanSquaredError(_XpnnLoss):
    """Mean of squared differences over the outputs (L2)."""

    _kind = losses.MeanSquaredError


class Loss_MeanAbsoluteError(_XpnnLoss):
    """Mean of absolute differences over the outputs (L1).

    Its gradient is ``sign(y_pred - y_true)``; the book's has the opposite sign, which the
    numerical gradient check refutes (no chapter trains with it).
    """

    _kind = losses.MeanAbsoluteError


class Activation_Softmax_Loss_CategoricalCrossentropy(Part):
    """Softmax with categorical cross-entropy: ``forward`` gives the mean loss (Chapters 9 to
    17) and ``backward`` the combined gradient ``(softmax - one_hot) / n`` in one pass."""

    def __init__(self) -> None:
        super().__init__()
        self.activation = Activation_Softmax()
        self.loss = Loss_CategoricalCrossentropy()

    _pass: tuple | None = None

    def _leans(self, values: Any, labels: Any) -> bool:
        """True where the compiled passes take ``values`` and ``labels``: the book's own
        softmax and loss, a 2-D NumPy array of the softmax's dtype and class indices."""
        activation = self.activation
        return (
            activation._lean is not None
            and type(values) is np.ndarray
            and values.dtype is activation._lean_dtype
            and values.ndim == 2
            and type(labels) is np.ndarray
            and labels.ndim == 1
            and labels.dtype.kind in "iu"
            and type(activation) is Activation_Softmax
            and type(self.loss) is Loss_CategoricalCrossentropy
        )

    def _lean_forward(self, inputs: Any, y_true: Any) -> Any:
        """``forward`` in compiled passes and NumPy's ``exp`` and ``log``, as the book's NumPy
        lines compute it; None (nothing changed) where a label is outside the classes."""
        kernels, dtype = self.activation._lean, inputs.dtype
        output = np.empty(inputs.shape, dtype)
        kernels["shift_rows"](inputs, output)
        np.exp(output, out=output)
        rows = inputs.shape[0]
        confidences = np.empty(rows, dtype)
        if rows != y_true.shape[0] or not kernels["normalize_take"](
            output, y_true, EPSILON, confidences
        ):
            return None
        np.log(confidences, out=confidences)
        total = dtype.type(kernels["negated_sum"](confidences))
        self.activation.inputs = inputs
        self.output = self.activation.output = output
        self._pass = None
        loss = self.loss
        loss.accumulated_sum += total
        loss.accumulated_count += rows
        return total.dtype.type(total / rows)  # np.mean's own steps

    def forward(self, inputs: Any, y_true: Any) -> Any:
        """Softmax of ``inputs`` into ``self.output``; returns the mean loss.

        With ``use(exact=False)`` on NumPy one compiled pass gives the loss (summed in float64)
        and the gradient, which ``backward`` takes if it is given the same outputs and labels.
        """
        if self._leans(inputs, y_true) and inputs.shape[0] > 0:
            loss = self._lean_forward(inputs, y_true)
            if loss is not None:
                return loss
        self.activation.forward(inputs)
        self.output = self.activation.output
        backend = self.activation._backend
        loss = self.loss
        if (
            not backend.on_host
            or isinstance(backend, _BookProducts)
            or type(loss) is not (Loss_CategoricalCrossentropy)
        ):
            self._pass = None
            return loss.calculate(self.output, y_true)
        labels = backend.ensure_labels(device_array(y_true))
        loss_sum, _, dinputs = backend.softmax_crossentropy(self.output, labels, EPSILON)
        samples = self.output.shape[0]
        self._pass = (self.output, y_true, dinputs)
        loss.accumulated_sum += loss_sum
        loss.accumulated_count += samples
        return loss_sum.dtype.type(loss_sum / samples)

    def backward(self, dvalues: Any, y_true: Any) -> None:
        """The gradient with respect to the softmax inputs; ``dvalues`` are its outputs."""
        done = self._pass
        if done is not None and done[0] is dvalues and done[1] is y_true:
            self.dinputs = done[2]
            return
        if self._leans(dvalues, y_true) and y_true.shape[0] == dvalues.shape[0]:
            dinputs = np.empty(dvalues.shape, dvalues.dtype)
            if self.activation._lean["crossentropy_backward"](dvalues, y_true, dinputs):
                self.dinputs = dinputs
                return
        probabilities = self._take(dvalues, "dvalues")
        backend = self._backend
        labels = backend.ensure_labels(device_array(y_true))
        rows, classes = probabilities.shape
        if labels.shape[0] != rows or (labels.ndim == 2 and labels.shape[1] != classes):
            raise ValueError(
                f"y_true has shape {tuple(labels.shape)}, which does not fit the softmax "
                f"outputs' {(rows, classes)}: one class index per row, or one-hot rows of "
                f"{classes}"
            )
        if labels.ndim == 2:
            labels = backend.xp.argmax(labels, axis=1)
        _, _, dinputs = backend.softmax_crossentropy(probabilities, labels, EPSILON)
        self.dinputs = self._show(dinputs)


class Accuracy(Part):
    """The book's common accuracy: the mean of ``compare``, and sums over a pass."""

    accumulated_sum: Any = 0
    accumulated_count = 0

    def calculate(self, predictions: Any, y: Any) -> Any:
        """The fraction predicted right; the pass's sums grow."""
        comparisons = self.compare(predictions, y)
        accuracy = _mean(comparisons, _float64)
        self.accumulated_sum += _sum(comparisons, _float64)
        self.accumulated_count += len(comparisons)
        return accuracy

    def calculate_accumulated(self) -> Any:
        """The fraction predicted right over the pass."""
        return self.accumulated_sum / self.accumulated_count

    def new_pass(self) -> None:
        """Start a pass: zero the accumulated sums."""
        self.accumulated_sum = 0
        self.accumulated_count = 0

    def _pair(self, predictions: Any, y: Any, labels: bool) -> tuple[Any, Any, Backend | None]:
        """Predictions and targets where they can be compared: NumPy for host predictions,
        else the predictions' device (``labels``: ``y`` holds class indices or one-hot rows)."""
        values = device_array(predictions)
        if isinstance(values, np.ndarray):
            return values, np.asarray(y), None
        backend = self._follow_any(values)
        y = device_array(y)
        targets = backend.ensure_labels(y, "y") if labels else backend.ensure(y, "y")
        return values, targets, backend

    def _follow_any(self, values: Any) -> Backend:
        backend = self._backend or backend_for(self._library, self._fixed_dtype or "float32")
        self._backend = backend
        if not backend.is_own(values):
            backend.refuse_foreign(values, "predictions")
        return backend


class Accuracy_Categorical(Accuracy):
    """Predicted classes against labels (the argmax of one-hot rows); ``binary=True`` compares
    each sigmoid output with its 0/1 target."""

    def __init__(self, *, binary: bool = False) -> None:
        super().__init__()
        self.binary = binary

    def init(self, y: Any) -> None:
        """Nothing to prepare."""

    def compare(self, predictions: Any, y: Any) -> Any:
        """True where the prediction is right."""
        values, targets, backend = self._pair(predictions, y, labels=not self.binary)
        if not self.binary and len(targets.shape) == 2:
            targets = (np if backend is None else backend.xp).argmax(targets, axis=1)
        if tuple(targets.shape) != tuple(values.shape):  # NumPy would broadcast them
            same_shape(targets, values.shape, "y", "the predictions' array")
        if backend is not None and values.dtype != targets.dtype:
            values = backend.xp.astype(values, targets.dtype)  # 0/1 classes against 0/1 floats
        right = values == targets
        return right if backend is None else OnDevice(right, backend)


class Accuracy_Regression(Accuracy):
    """A prediction is right within ``precision`` of its target: ``std(y) / 250`` of the
    targets ``init`` first sees."""

    def __init__(self) -> None:
        super().__init__()
        self.precision = None

    def init(self, y: Any, reinit: bool = False) -> None:
        """Set the precision from ``y`` (again with ``reinit``)."""
        if self.precision is None or reinit:
            self.precision = np.std(y) / 250

    def compare(self, predictions: Any, y: Any) -> Any:
        """True where the prediction is within ``precision`` of its target."""
        if self.precision is None:
            raise RuntimeError(
                "Accuracy_Regression has no precision yet: call init(y) first (Model.train does)"
            )
        values, targets, backend = self._pair(predictions, y, labels=False)
        if tuple(targets.shape) != tuple(values.shape):  # NumPy would broadcast them
            same_shape(targets, values.shape, "y", "the predictions' array")
        if backend is None:
            return np.absolute(values - targets) < self.precision
        right = backend.xp.abs(values - targets) < float(self.precision)
        return OnDevice(right, backend)
