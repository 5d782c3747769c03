"""The book's layers and activations, on xpnn's: ``Layer_Dense``, ``Layer_Dropout``,
``Layer_Input``, ``Activation_ReLU``, ``Activation_Softmax``, ``Activation_Sigmoid`` and
``Activation_Linear``, with the book's signatures and attributes.

Random numbers come from NumPy's global generator as the book draws them: weights are
``0.01 * np.random.randn(n_inputs, n_neurons)`` and dropout masks ``np.random.binomial``, so
``nnfs.init()`` or ``np.random.seed`` gives the book's own numbers on every backend.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import activations, layers
from .._checks import ensure_numbers
from ..backends import Backend
from ..building import ParameterBuffer
from . import _lean
from ._device import Part, _BookProducts, backend_for, device_array, float_name

__all__ = [
    "Activation_Linear",
    "Activation_ReLU",
    "Activation_Sigmoid",
    "Activation_Softmax",
    "Layer_Dense",
    "Layer_Dropout",
    "Layer_Input",
]

#: The optimizer states the book keeps on a layer, here views of the layer's flat buffers.
_STATES = frozenset(
    f"{kind}_{state}" for kind in ("weight", "bias") for state in ("momentums", "cache")
)


class _Wrapped(Part):
    """A book object with an xpnn layer inside (``_layer``), which does the computing.

    On the numpy backend with numba, ``_lean`` holds the compiled passes (``_kernels``) that
    its methods run for NumPy arrays of ``_lean_dtype``, the backend's float dtype.
    """

    _layer: Any
    _lean: dict[str, Any] | None = None
    _lean_dtype: np.dtype | None = None

    def _bind(self, backend: Backend) -> None:
        self._backend = backend
        self._layer.backend = backend
        self._lean = _lean.kernels(backend)
        self._lean_dtype = np.dtype(backend.dtype_name)

    def _leans_on(self, a: Any) -> bool:
        """True where ``a`` takes the compiled passes: a 2-D NumPy array of the dtype."""
        return (
            self._lean is not None
            and type(a) is np.ndarray
            and a.dtype is self._lean_dtype
            and a.ndim == 2
        )

    def forward(self, inputs: Any, training: bool = False) -> None:
        """The book's forward pass: ``self.output`` from ``inputs``."""
        self.inputs = inputs
        self.output = self._show(self._layer.forward(self._take(inputs)))

    #: What the backward pass reads of the forward pass (``inputs`` or ``output``): the book's
    #: attribute is handed to the inner layer first, so a script may set it, as Chapter 9 sets a
    #: softmax's ``output`` to check its gradient.
    _remembers = "inputs"

    def _before_forward(self) -> RuntimeError:
        """The error of a backward pass before any forward pass, naming the book's class."""
        return RuntimeError(
            f"{type(self).__name__}.backward() before forward(): dvalues is the gradient of "
            "the output of the last forward pass, and there has been none"
        )

    def backward(self, dvalues: Any) -> None:
        """The book's backward pass: ``self.dinputs`` from the gradient ``dvalues``."""
        remembered = getattr(self, self._remembers, None)
        if remembered is None:
            raise self._before_forward()
        gradient = self._take(dvalues, "dvalues")
        setattr(self._layer, self._remembers, self._take(remembered))
        self.dinputs = self._show(self._layer.backward(gradient))

    def predictions(self, outputs: Any) -> Any:
        """The outputs themselves (the book's default)."""
        return outputs


class Layer_Dense(_Wrapped):
    """The book's dense layer: ``output = inputs @ weights + biases``, on ``xpnn.Dense``.

    Weights are ``0.01 * np.random.randn(n_inputs, n_neurons)`` from NumPy's global generator;
    the layer's dtype is theirs (float32 after ``nnfs.init()``, float64 without) unless
    ``xpnn.book.use`` fixed one. ``weight_scale`` (a class attribute, 0.01 as in the book's
    final code) is the factor: the book's regression chapter (17) draws with 0.1, which
    ``Layer_Dense.weight_scale = 0.1`` gives.
    """

    weight_scale = 0.01

    def __init__(
        self,
        n_inputs: int,
        n_neurons: int,
        weight_regularizer_l1: float = 0,
        weight_regularizer_l2: float = 0,
        bias_regularizer_l1: float = 0,
        bias_regularizer_l2: float = 0,
    ) -> None:
        super().__init__()
        regularizers = (
            weight_regularizer_l1,
            weight_regularizer_l2,
            bias_regularizer_l1,
            bias_regularizer_l2,
        )
        # Checked (by a throwaway layer on the host) before the global generator is drawn from.
        layers.Dense(n_inputs, n_neurons, *regularizers, seed=0, dtype="float64")
        weights = self.weight_scale * np.random.randn(n_inputs, n_neurons)  # noqa: NPY002 (the book's)
        self._make(n_inputs, n_neurons, regularizers, weights)

    def _make(self, n_inputs: int, n_neurons: int, regularizers: tuple, weights: Any) -> None:
        """Build the inner layer around ``weights`` (drawn, or loaded from a file).

        Its weights and biases become views of one flat buffer, and their gradients of another,
        so an optimizer updates the whole layer in one pass (one compiled kernel on NumPy).
        """
        dtype = self._fixed_dtype or float_name(weights, backend_for("numpy", "float32"))
        backend = backend_for(self._library, dtype or "float32")
        inner = layers.Dense(n_inputs, n_neurons, *regularizers, backend=backend, seed=0)
        inner.weights = backend.asarray(weights)
        self._layer = inner
        self._backend = backend
        self._buffer = ParameterBuffer(backend, [inner])
        self._sizes = (n_inputs * n_neurons, n_neurons)
        self._lean = _lean.kernels(backend)
        self._lean_dtype = np.dtype(backend.dtype_name)
        self._exact = isinstance(backend, _BookProducts)
        self._regularized = inner.regularized

    def forward(self, inputs: Any, training: bool = False) -> None:
        """The book's forward pass: ``self.output = np.dot(inputs, weights) + biases``."""
        if self._leans_on(inputs):
            wide = _lean.products(self._exact, self._lean_dtype)
            inner = self._layer
            rows, n_inputs = inputs.shape
            output = np.empty((rows, inner.n_neurons), self._lean_dtype)
            if wide is not None and self._lean["dense_forward"](
                inputs,
                inner.weights,
                inner.biases,
                output,
                _lean.wide_mode(wide, rows, n_inputs, inner.n_neurons, False, False),
            ):
                self.inputs = inner.inputs = inputs
                self.output = inner.output = output
                return
        super().forward(inputs, training)

    @classmethod
    def _from_arrays(cls, weights: Any, biases: Any, regularizers: tuple) -> Layer_Dense:
        """A layer holding ``weights`` and ``biases``, drawing nothing (loading a file)."""
        layer = cls.__new__(cls)
        Part.__init__(layer)
        layer._make(weights.shape[0], weights.shape[1], regularizers, weights)
        layer.set_parameters(weights, biases)
        return layer

    def _take(self, a: Any, argument: str = "inputs") -> Any:
        # The dtype is the weights'; inputs of another dtype are converted to it.
        a = device_array(a)
        backend = self._backend
        if type(a) is backend.array_type and a.dtype == backend.dtype:
            return a
        return ensure_numbers(backend, a, argument)  # text, complex, objects refused by name

    def backward(self, dvalues: Any) -> None:
        """Gradients of the weights and biases (with the regularizers') and of the inputs.

        On NumPy a float64 gradient into a float32 layer (the book's float64 targets or dropout
        masks) gives a float64 bias gradient, and from then on float64 bias states, as the
        book's ``np.sum`` and in-place arithmetic give them.
        """
        inner = self._layer
        # The gradient of the inputs is worked out when read (a first layer's never is), from
        # the weights of this pass: an update before that keeps a copy of them (update_params).
        inputs = getattr(inner, "inputs", None)
        if inputs is None:
            raise self._before_forward()
        if self._leans_on(dvalues) and self._leans_on(inputs):
            wide = _lean.products(self._exact, self._lean_dtype)
            rows, n_inputs = inputs.shape
            if wide is not None and self._lean["dense_backward"](
                inputs,
                dvalues,
                inner.dweights,
                inner.dbiases,
                _lean.wide_mode(wide, n_inputs, rows, dvalues.shape[1], True, False),
            ):
                if self._regularized:
                    inner.add_penalty_gradients()
                self._pending, self._pending_weights, self._dinputs = dvalues, None, None
                self._pending_wide, self._wide_dbiases = wide, None
                return
        values = self._take(dvalues, "dvalues")
        inner.backward(values, need_dinputs=False)
        self._pending, self._pending_weights, self._dinputs = values, None, None
        self._pending_wide = None
        if values.dtype != self._layer.biases.dtype:
            self._wide_dbiases = self._wide_bias_gradient(values)
        else:
            self._wide_dbiases = None

    _wide_dbiases: Any = None
    _pending: Any = None
    _pending_weights: Any = None
    _pending_wide: bool | None = None  # ``_lean.products``, where the compiled pass ran
    _dinputs: Any = None

    @property
    def dinputs(self) -> Any:
        """The gradient of the inputs, ``dvalues @ weights.T`` (the weights of the pass)."""
        pending = self._pending
        if pending is not None:
            weights = (
                self._layer.weights if self._pending_weights is None else self._pending_weights
            )
            dinputs = None
            wide = self._pending_wide
            if wide is not None:
                rows, (n_inputs, n_neurons) = pending.shape[0], weights.shape
                mode = _lean.wide_mode(wide, rows, n_neurons, n_inputs, False, True)
                dinputs = np.empty((rows, n_inputs), self._lean_dtype)
                if not self._lean["input_gradient"](pending, weights, dinputs, mode):
                    dinputs = None
            if dinputs is None:
                dinputs = self._show(self._backend.matmul(pending, weights.T))
            self._dinputs = dinputs
            self._pending = self._pending_weights = None
        return self._dinputs

    @dinputs.setter
    def dinputs(self, value: Any) -> None:
        self._pending, self._pending_weights, self._dinputs = None, None, value

    def _before_update(self) -> None:
        """Keep the weights the unread input gradient needs before they change."""
        if self._pending is not None and self._pending_weights is None:
            weights = self._layer.weights
            if type(weights) is np.ndarray:
                self._pending_weights = weights.copy()
            else:
                self._pending_weights = self._backend.xp.asarray(weights, copy=True)

    #: The float64 bias states (by the book's names) once a float64 gradient arrived.
    _wide_states: dict | None = None

    def _wide_bias_gradient(self, values: Any) -> Any:
        """The book's bias gradient in the gradient's dtype: the column sums and penalties."""
        inner, xp = self._layer, self._backend.xp
        gradient = xp.sum(values, axis=0, keepdims=True)
        if inner.bias_regularizer_l1 > 0:
            sign = 1.0 - 2.0 * xp.astype(inner.biases < 0, inner.biases.dtype)
            gradient = gradient + inner.bias_regularizer_l1 * sign
        if inner.bias_regularizer_l2 > 0:
            gradient = gradient + 2 * inner.bias_regularizer_l2 * inner.biases
        return gradient

    @property
    def weights(self) -> Any:
        """The weights (an array of the layer's backend)."""
        return self._show(self._layer.weights)

    @weights.setter
    def weights(self, value: Any) -> None:
        self._before_update()
        self._layer.weights[...] = self._parameter(value, self._layer.weights, "weights")

    @property
    def biases(self) -> Any:
        """The biases, shape ``(1, n_neurons)``."""
        return self._show(self._layer.biases)

    @biases.setter
    def biases(self, value: Any) -> None:
        self._layer.biases[...] = self._parameter(value, self._layer.biases, "biases")

    def _parameter(self, value: Any, like: Any, name: str) -> Any:
        value = self._backend.ensure(device_array(value), name)
        if tuple(value.shape) != tuple(like.shape):
            raise ValueError(
                f"{name} must have shape {tuple(like.shape)}; got {tuple(value.shape)}"
            )
        return value

    def __getattr__(self, name: str) -> Any:
        # Gradients, optimizer state and regularizers live on the inner xpnn layer and buffer.
        inner = self.__dict__.get("_layer")
        if inner is None:
            raise AttributeError(name)
        if name == "dbiases" and self._wide_dbiases is not None:
            return self._show(self._wide_dbiases)
        if name in ("dweights", "dbiases"):
            return self._show(getattr(inner, name))
        if name in _STATES:
            if name.startswith("bias") and self._wide_states and name in self._wide_states:
                return self._show(self._wide_states[name])
            return self._show(self._state(name))
        if name.endswith(("_regularizer_l1", "_regularizer_l2")):
            return getattr(inner, name)
        raise AttributeError(f"'Layer_Dense' object has no attribute {name!r}")

    def _state(self, name: str) -> Any:
        """The optimizer state ``name`` (``weight_momentums``, ...): a view of the buffer's."""
        kind, _, state = name.partition("_")
        flat = getattr(self._buffer, f"param_{state}", None)
        if flat is None:
            raise AttributeError(f"'Layer_Dense' object has no attribute {name!r} (yet)")
        n_weights, n_biases = self._sizes
        xp = self._backend.xp
        if kind == "weight":
            return xp.reshape(flat[:n_weights], tuple(self._layer.weights.shape))
        return xp.reshape(flat[n_weights:], (1, n_biases))

    def get_parameters(self) -> tuple[Any, Any]:
        """``(weights, biases)``."""
        return self.weights, self.biases

    def set_parameters(self, weights: Any, biases: Any) -> None:
        """Replace the weights and biases (shapes checked before either changes)."""
        new_weights = self._parameter(weights, self._layer.weights, "weights")
        new_biases = self._parameter(biases, self._layer.biases, "biases")
        self._before_update()
        self._layer.weights[...] = new_weights
        self._layer.biases[...] = new_biases


class Layer_Dropout(Part):
    """The book's dropout: keeps each input with probability ``1 - rate`` (``self.rate`` holds
    that, as the book's does) and scales the kept ones by its inverse.

    The mask is ``np.random.binomial(1, self.rate, size) / self.rate`` from NumPy's global
    generator, drawn on the host and moved to the device.
    """

    def __init__(self, rate: float) -> None:
        super().__init__()
        layers.Dropout(rate, seed=0)  # checks rate, naming it
        self.rate = 1 - rate

    def forward(self, inputs: Any, training: bool = True) -> None:
        """Drop and scale while ``training`` (the book's chapters before the model always do);
        pass a copy of the inputs on otherwise."""
        self.inputs = inputs
        values = self._take(inputs)
        if not training:
            self.output = self._show(values * 1)
            return
        shape = tuple(values.shape)
        mask = np.random.binomial(1, self.rate, size=shape) / self.rate  # noqa: NPY002
        self._mask = self._backend.ensure(mask, "mask")  # on NumPy float64, as the book's
        self.binary_mask = self._show(self._mask)
        self.output = self._show(values * self._mask)

    def backward(self, dvalues: Any) -> None:
        """The gradient through the same mask."""
        if getattr(self, "_mask", None) is None:
            raise RuntimeError(
                "Layer_Dropout.backward() before forward() in training: dvalues goes back "
                "through the mask of the last training pass, and there has been none"
            )
        self.dinputs = self._show(self._take(dvalues, "dvalues") * self._mask)


class Layer_Input:
    """The model's input "layer": its output is the data it is given."""

    def forward(self, inputs: Any, training: bool = False) -> None:
        """``self.output = inputs``."""
        self.output = inputs


class Activation_ReLU(_Wrapped):
    """``max(0, x)`` (``xpnn.ReLU``, compiled on the numpy backend)."""

    def __init__(self) -> None:
        super().__init__()
        self._layer = activations.ReLU(backend=backend_for("numpy", "float32"))

    def forward(self, inputs: Any, training: bool = False) -> None:
        """The book's ``self.output = np.maximum(0, inputs)``."""
        if self._leans_on(inputs):
            output = np.empty(inputs.shape, self._lean_dtype)
            self._lean["relu"](inputs, output)
            self.inputs = self._layer.inputs = inputs
            self.output = self._layer.output = output
            return
        super().forward(inputs, training)

    def backward(self, dvalues: Any) -> None:
        """The book's ``dinputs = dvalues.copy(); dinputs[inputs <= 0] = 0``."""
        inputs = getattr(self, "inputs", None)
        if self._leans_on(dvalues) and self._leans_on(inputs) and inputs.shape == dvalues.shape:
            dinputs = np.empty(dvalues.shape, self._lean_dtype)
            self._lean["relu_backward"](dvalues, inputs, dinputs)
            self.dinputs = dinputs
            return
        super().backward(dvalues)


class Activation_Softmax(_Wrapped):
    """Each row's normalised exponentials (``xpnn.Softmax``)."""

    _remembers = "output"

    def __init__(self) -> None:
        super().__init__()
        self._layer = activations.Softmax(backend=backend_for("numpy", "float32"))

    def predictions(self, outputs: Any) -> Any:
        """The most probable class of each row."""
        values = self._take(outputs, "outputs")
        return self._show(self._backend.xp.argmax(values, axis=1))


class Activation_Sigmoid(_Wrapped):
    """``1 / (1 + exp(-x))`` (``xpnn.Sigmoid``)."""

    _remembers = "output"

    def __init__(self) -> None:
        super().__init__()
        self._layer = activations.Sigmoid(backend=backend_for("numpy", "float32"))

    def predictions(self, outputs: Any) -> Any:
        """1 where the output is above 0.5, else 0, as integers (the book's ``(o > 0.5) * 1``)."""
        values = self._take(outputs, "outputs")
        xp = self._backend.xp
        return self._show(xp.astype(values > 0.5, self._backend.index_dtype))


class Activation_Linear(_Wrapped):
    """The identity, for regression outputs (``xpnn.Linear``)."""

    def __init__(self) -> None:
        super().__init__()
        self._layer = activations.Linear(backend=backend_for("numpy", "float32"))
