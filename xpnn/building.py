"""What ``Model.finalize`` checks and lays out, and ``set_parameters``' check of a value.

The checks say what to change: layer sizes that do not chain, an output layer, loss and metric
that do not fit together, a part that is not the model's own, a setting its dtype cannot hold.
What a checked model lays out is its ``Network``: the paths of the passes, the flat
``ParameterBuffer`` the optimizer updates, and the training state (``EpochInProgress``).
"""

from __future__ import annotations

import inspect
import math
import os
from typing import Any, Protocol

import numpy as np

from ._checks import HasSettings, shown
from .activations import Softmax
from .backends import Backend, to_numpy
from .backends.base import refuse_masked
from .layers import Dropout, Layer
from .losses import CategoricalCrossentropy, Loss, SoftmaxCategoricalCrossentropy
from .metrics import Accuracy
from .optimizers import Optimizer
from .parts import OWN


class ModelFace(Protocol):
    """What the modules below ``Model`` (training, io, distributed, the summary...) read of a
    model: its public attributes and the book's methods. They name this, not ``Model``, so
    that none of them depends on the module that depends on them, not even for a type checker.
    """

    backend: Backend
    seed: int | None
    rng: np.random.Generator
    layers: list[Layer]
    loss: Loss | None
    optimizer: Optimizer | None
    accuracy: Accuracy | None
    epochs_trained: int

    @property
    def network(self) -> Network | None:
        """The ``Network`` that ``finalize`` laid out; None before."""

    @property
    def n_inputs(self) -> int | None:
        """How many features a sample has (None where no layer says)."""

    @property
    def n_outputs(self) -> int | None:
        """How many values the model gives per sample (None where no layer says)."""

    def add(self, layer: Layer) -> None:
        """Append a layer."""

    def set(
        self,
        *,
        loss: Loss | None = None,
        optimizer: Optimizer | None = None,
        accuracy: Accuracy | None = None,
    ) -> None:
        """Choose the loss, the optimizer and the accuracy metric."""

    def finalize(self) -> None:
        """Check the model and lay out its network."""

    def forward(self, X: Any, training: bool = False) -> Any:
        """The last layer's output for ``X``."""

    def regularization_loss(self) -> Any:
        """The regularizers' penalty, a 0-d array on the device."""

    def save(self, path: str | os.PathLike[str]) -> None:
        """Save the model (and its training state) to ``path``."""

    def get_parameters(self) -> list[tuple[np.ndarray, ...]]:
        """Each trainable layer's parameters, as host arrays."""

    def set_parameters(self, parameters: list[tuple[Any, ...]]) -> None:
        """Replace every trainable layer's parameters (checked first)."""


#: What each of ``Model.set``'s arguments must be.
_KINDS = {"loss": Loss, "optimizer": Optimizer, "accuracy": Accuracy}


class ParameterBuffer:
    """Every trainable array of a model in one flat buffer, and every gradient in another.

    Each layer's ``weights``, ``dweights``, ... become views into them, so an optimizer updates
    the whole model in a few whole-buffer operations.
    """

    parameter_names = (("param", "params", "dparams"),)
    #: Slots after the gradients in ``summed`` for a step's figures (loss, right predictions,
    #: a stop flag), so that data-parallel training sums both over processes in one call.
    FIGURE_SLOTS = 3

    def __init__(self, backend: Backend, layers: list[Layer]) -> None:
        self.backend = backend
        entries = [(layer, p, g) for layer in layers for _, p, g in layer.parameter_names]
        sizes = [math.prod(getattr(layer, p).shape) for layer, p, _ in entries]
        self.params = backend.zeros(sum(sizes))
        self.summed = backend.zeros(sum(sizes) + self.FIGURE_SLOTS)
        self.dparams = self.summed[: sum(sizes)]
        self.figures = self.summed[sum(sizes) :]
        reshape = backend.xp.reshape
        offset = 0
        for (layer, p, g), size in zip(entries, sizes):
            value = getattr(layer, p)
            view = reshape(self.params[offset : offset + size], value.shape)
            view[...] = value
            setattr(layer, p, view)
            setattr(layer, g, reshape(self.dparams[offset : offset + size], value.shape))
            offset += size

    def trainable_parameters(self) -> list[tuple[str, Any, Any]]:
        """The one (prefix, parameters, gradients) triple an optimizer updates."""
        return [("param", self.params, self.dparams)]


class EpochInProgress:
    """Where an epoch stopped by Ctrl-C stands, so that ``train`` finishes it exactly.

    ``order`` is the epoch's sample order (a host int64 array; None without shuffling),
    ``done`` the samples its first ``steps`` steps took, ``loss_sum`` (a 0-d float array) and
    ``correct`` (a 0-d integer array) its sums so far, on the device, over ``compared``
    predictions.
    """

    def __init__(
        self,
        samples: int,
        done: int,
        steps: int,
        order: np.ndarray | None,
        loss_sum: Any,
        correct: Any,
        compared: int,
    ) -> None:
        self.samples, self.done, self.steps, self.order = samples, done, steps, order
        self.loss_sum, self.correct, self.compared = loss_sum, correct, compared
        #: A digest of the data it stopped on (``agreement.data_digest``), where known: the
        #: next ``train`` finishes it on the same data only. A checkpoint does not keep it.
        self.data: str | None = None


class Network:
    """What ``Model.finalize`` lays out from a checked model: the network that trains, with its
    training state. The model owns it (``Model.network``); training, saving, loading,
    data-parallel training and the summary receive it and read only what is listed here.

    Attributes:
        backend: the backend every array lives on.
        layers: the model's layers, in order (its own list).
        loss: the model's loss.
        combined: a Softmax output with categorical cross-entropy, trained through their
            combined gradient (``SoftmaxCategoricalCrossentropy``); None otherwise.
        trainable: the layers with parameters, in order.
        backward_chain: the layers ``backward`` runs in order, from the output back to the
            layer after ``first_trainable``.
        first_trainable: the first layer with parameters (None if none), which ``backward``
            runs last and which computes only its own gradients: nothing needs the gradient of
            the data.
        parameters: the ``ParameterBuffer`` that holds every parameter and gradient (and the
            optimizer's state buffers, once it has stepped) in flat arrays.
        rng: the model's generator (``Model.rng``): it drew the initial weights and draws
            each epoch's order.
        epochs_trained: epochs finished since ``finalize`` (or in the run a checkpoint holds).
        epoch_in_progress: the ``EpochInProgress`` that Ctrl-C stopped, or None.
    """

    def __init__(
        self, backend: Backend, layers: list[Layer], loss: Loss, rng: np.random.Generator
    ) -> None:
        self.backend, self.layers, self.loss, self.rng = backend, layers, loss, rng
        self.combined: SoftmaxCategoricalCrossentropy | None = None
        if isinstance(layers[-1], Softmax) and isinstance(loss, CategoricalCrossentropy):
            self.combined = SoftmaxCategoricalCrossentropy(backend=backend)
        self.trainable = [layer for layer in layers if layer.parameter_names]
        through = layers[:-1] if self.combined is not None else layers
        first = next((i for i, layer in enumerate(through) if layer.parameter_names), None)
        self.first_trainable = None if first is None else through[first]
        self.backward_chain = through[::-1] if first is None else through[:first:-1]
        self.parameters = ParameterBuffer(backend, self.trainable)
        # A layer of the user's may bind a new gradient array, as the book writes
        # (``self.dweights = ...``), where xpnn's own layers write into the buffer's views: its
        # gradients are copied into the views after each backward pass (see ``backward_from``).
        self._rebound = [
            (layer, g, getattr(layer, g))
            for layer in self.trainable
            if type(layer) not in OWN["layer"]
            for _, _, g in layer.parameter_names
        ]
        self._first_takes_flag = self.first_trainable is not None and takes_keyword(
            self.first_trainable.backward, "need_dinputs"
        )
        self.epochs_trained = 0
        self.epoch_in_progress: EpochInProgress | None = None

    def forward(self, X: Any, training: bool = False) -> Any:
        """Run ``X`` through every layer and return the last layer's output."""
        for layer in self.layers:
            X = passed_on(layer, layer.forward(X, training), "forward", "output")
        return X

    def backward(self, output: Any, y: Any) -> None:
        """Gradients of the loss for every layer with parameters, from the output back."""
        if self.combined is not None:
            dvalues = self.combined.backward(output, y)
        else:
            dvalues = passed_on(self.loss, self.loss.backward(output, y), "backward", "dinputs")
        self.backward_from(dvalues)

    def backward_from(self, dvalues: Any) -> None:
        """``backward`` from ``dvalues``, the gradient of the loss for the last layer it runs."""
        for layer in self.backward_chain:
            dvalues = passed_on(layer, layer.backward(dvalues), "backward", "dinputs")
        if self._first_takes_flag:
            self.first_trainable.backward(dvalues, need_dinputs=False)
        elif self.first_trainable is not None:  # a layer written as the book writes backward
            self.first_trainable.backward(dvalues)
        for layer, name, view in self._rebound:
            gradient = getattr(layer, name)
            if gradient is not view:
                if getattr(gradient, "shape", None) != view.shape:
                    raise ValueError(
                        f"{type(layer).__name__}.backward set {name} to "
                        f"{_shape(gradient)}; expected an array of shape {tuple(view.shape)}, "
                        "the shape of the parameter it is the gradient of"
                    )
                view[...] = gradient
                setattr(layer, name, view)

    def regularization_loss(self) -> Any:
        """The regularizers' penalty summed over the layers, a 0-d array on the device."""
        total = self.backend.zeros(())
        for layer in self.trainable:
            total = total + self.loss.regularization_loss(layer)
        return total


def passed_on(part: Any, returned: Any, method: str, name: str) -> Any:
    """What ``part``'s ``method`` passes to the next part: what it returned, or, where it
    returned nothing (as the book's classes do), the attribute ``name`` it set."""
    if returned is not None:
        return returned
    value = getattr(part, name, None)
    if value is None:
        raise TypeError(
            f"{type(part).__name__}.{method} returned nothing and set no {name}: set "
            f"self.{name} (and return it)"
        )
    return value


def takes_keyword(function: Any, name: str) -> bool:
    """Whether ``function`` accepts the keyword argument ``name`` (or any keyword)."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):  # no signature to read: call it as it is declared to be
        return True
    return any(
        (p.name == name and p.kind is not inspect.Parameter.POSITIONAL_ONLY)
        or p.kind is inspect.Parameter.VAR_KEYWORD
        for p in parameters
    )


def _shape(value: Any) -> str:
    shape = getattr(value, "shape", None)
    return f"an array of shape {tuple(shape)}" if shape is not None else type(value).__name__


def wire(model: ModelFace) -> Network:
    """The network of a checked, built model: its paths, its parameter buffer, a fresh
    training state."""
    return Network(model.backend, model.layers, model.loss, model.rng)


def finalized(model: ModelFace, what: str) -> Network:
    """``model``'s network; ValueError if ``finalize`` has not laid it out."""
    network = model.network
    if network is None:
        raise ValueError(f"call finalize() before {what}()")
    return network


def take_parts(model: ModelFace, **parts: Any) -> None:
    """``Model.set``: each part given (loss, optimizer, accuracy) checked, claimed for the
    model, and set; a part it replaces released. Every check comes before any change."""
    for argument, value in parts.items():
        kind = _KINDS[argument]
        if value is not None and not isinstance(value, kind):
            raise TypeError(f"{argument} must be an xpnn {kind.__name__}; got {shown(value)}")
    changes = [
        (argument, value, getattr(model, argument))
        for argument, value in parts.items()
        if value is not None and value is not getattr(model, argument)
    ]
    for argument, value, _ in changes:  # every check before any change
        if not value.model_is(model):
            value.claim(model, argument)
    for argument, value, old in changes:
        if old is not None:
            old.release(model)
        setattr(model, argument, value)


def check_model(model: ModelFace) -> None:
    """Everything ``finalize`` checks before it builds: parts, sizes, fit, ownership, settings."""
    if not model.layers:
        raise ValueError("the model has no layers: add() some before finalize()")
    if model.loss is None:
        raise ValueError("the model has no loss: call set(loss=...) before finalize()")
    if isinstance(model.loss, SoftmaxCategoricalCrossentropy):
        raise ValueError(
            "set loss=CategoricalCrossentropy() with a Softmax output layer; the model "
            "combines them itself"
        )
    check_sizes(model)
    check_coherence(model)
    check_parts(model)
    check_settings(model)


def check_sizes(model: ModelFace) -> None:
    """Each layer takes as many inputs as the layer with a fixed width before it gives."""
    layers = [(repr(layer), type(layer), layer.config()) for layer in model.layers]
    problem = size_problem(layers)
    if problem is not None:
        raise ValueError(problem)


def size_problem(layers: list[tuple[str, type[Layer], dict[str, Any]]]) -> str | None:
    """Where layers, each (its name, its class, its settings), do not fit one after the other;
    None if they do. Loading checks a file's layers with it before building any."""
    width, previous = None, None
    for index, (name, cls, settings) in enumerate(layers):
        n_inputs, n_outputs = cls.widths(**settings)
        if n_inputs is not None and width is not None and n_inputs != width:
            return (
                f"layer {index} ({name}) takes {n_inputs} inputs but layer {previous} gives "
                f"{width} outputs"
            )
        if n_outputs is not None:
            width, previous = n_outputs, f"{index} ({name})"
    return None


def check_coherence(model: ModelFace) -> None:
    """The output layer, the loss and the metric fit together; else say what to change."""
    output = model.layers[-1]
    if isinstance(output, Dropout):
        raise ValueError(
            "Dropout cannot be the output layer (it would drop outputs while training): "
            "put it before the last Dense layer"
        )
    problem = model.loss.output_problem(output)
    if problem is None and model.accuracy is not None:
        problem = model.accuracy.output_problem(output, model.loss)
    if problem is None and isinstance(output, Softmax) and model.n_outputs == 1:
        problem = (
            "a Softmax over 1 output always gives 1: give the last Dense layer one output "
            "per class, or use a Sigmoid output with BinaryCrossentropy for one yes/no output"
        )
    if problem is not None:
        raise ValueError(problem)


def check_parts(model: ModelFace) -> None:
    """Every layer once, and every part the model's own (the list may have been edited)."""
    seen: set[int] = set()
    for index, layer in enumerate(model.layers):
        if not isinstance(layer, Layer):
            raise TypeError(f"layer {index} is not an xpnn layer: {layer!r}")
        if id(layer) in seen:
            raise ValueError(f"layer {index}: this {layer!r} is in the model twice")
        seen.add(id(layer))
    for argument, part in [
        *((f"layer {i}", layer) for i, layer in enumerate(model.layers)),
        ("loss", model.loss),
        ("optimizer", model.optimizer),
        ("accuracy", model.accuracy),
    ]:
        if part is not None and not part.model_is(model):
            part.claim(model, argument)


def check_settings(model: ModelFace) -> None:
    """Every float setting as the model's dtype holds it (see ``HasSettings``)."""
    dtype = model.backend.dtype_name
    for part in (*model.layers, model.optimizer, model.accuracy):
        if isinstance(part, HasSettings):
            part.check_settings(dtype)


def parameter_moves(model: ModelFace, parameters: list[tuple[Any, ...]]) -> list[tuple[Any, Any]]:
    """``set_parameters``: (target view, checked host value) pairs, every count, shape and value
    checked before anything is written."""
    trainable = finalized(model, "set_parameters").trainable
    expected = "a list of tuples of arrays, one per layer with parameters, as get_parameters gives"
    if isinstance(parameters, (str, bytes, dict)) or not hasattr(parameters, "__iter__"):
        raise TypeError(f"parameters must be {expected}; got {shown(parameters)}")
    parameters = list(parameters)
    if len(parameters) != len(trainable):
        raise ValueError(
            f"parameters must hold {len(trainable)} entries, one per layer with "
            f"parameters; got {len(parameters)}"
        )
    moves = []
    for index, (layer, values) in enumerate(zip(trainable, parameters)):
        if isinstance(values, (str, bytes, dict)) or not hasattr(values, "__iter__"):
            raise TypeError(f"parameters[{index}] must be a tuple of arrays; got {shown(values)}")
        values = tuple(values)
        if len(values) != len(layer.parameter_names):
            raise ValueError(
                f"parameters[{index}] must hold {len(layer.parameter_names)} arrays for "
                f"{layer!r}; got {len(values)}"
            )
        for (_, p, _), value in zip(layer.parameter_names, values):
            target = getattr(layer, p)
            argument = f"parameters[{index}] {p} of {layer!r}"
            moves.append((target, parameter_value(model.backend, value, argument, target)))
    return moves


def parameter_value(backend: Backend, value: Any, argument: str, target: Any) -> np.ndarray:
    """``value`` on the host in the backend's dtype, checked to hold real numbers of the
    target's shape that are finite in that dtype."""
    refuse_masked(value, argument)
    try:
        value = np.asarray(to_numpy(value))
    except (TypeError, ValueError) as error:
        raise TypeError(f"{argument} must be an array; got {type(value).__name__}") from error
    if value.dtype.kind not in "iuf":
        raise TypeError(f"{argument} must hold real numbers; got dtype {value.dtype}")
    if value.shape != tuple(target.shape):
        raise ValueError(f"{argument} must have shape {tuple(target.shape)}; got {value.shape}")
    dtype = backend.dtype_name
    with np.errstate(over="ignore"):
        converted = value.astype(dtype)
    if not np.all(np.isfinite(converted)):
        if not np.all(np.isfinite(value)):
            raise ValueError(f"{argument} holds NaN or infinity")
        largest = float(np.max(np.abs(value)))
        raise ValueError(
            f"{argument} holds values beyond {dtype}'s range, the model's dtype (largest "
            f"{np.finfo(dtype).max:.3g}): its largest magnitude is {largest:.3g}"
        )
    return converted
