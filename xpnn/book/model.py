"""The book's final ``Model`` (Chapter 22): layers in a chain, trained in steps that print as the
book's do, on the book's objects (and so on xpnn's layers and kernels).

``save``, ``save_parameters`` and ``Model.load`` write and read xpnn's own file format (tensors
and JSON, checked before use; no pickle, so loading runs no code from the file).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .. import activations, io, layers, losses, metrics, optimizers
from .._checks import positive_int
from ..backends import to_numpy
from ..io.format import expect
from ..io.reader import reading
from ..model import Model as XpnnModel
from . import layers as book_layers
from . import losses as book_losses
from . import optimizers as book_optimizers
from ._device import backend_for, current

__all__ = ["Model"]

#: Book class and xpnn class of each part a saved model may hold.
_LAYERS = (
    (book_layers.Activation_ReLU, activations.ReLU),
    (book_layers.Activation_Softmax, activations.Softmax),
    (book_layers.Activation_Sigmoid, activations.Sigmoid),
    (book_layers.Activation_Linear, activations.Linear),
)
_LOSSES = (
    (book_losses.Loss_CategoricalCrossentropy, losses.CategoricalCrossentropy),
    (book_losses.Loss_BinaryCrossentropy, losses.BinaryCrossentropy),
    (book_losses.Loss_MeanSquaredError, losses.MeanSquaredError),
    (book_losses.Loss_MeanAbsoluteError, losses.MeanAbsoluteError),
)
_OPTIMIZERS = (
    (book_optimizers.Optimizer_SGD, optimizers.SGD),
    (book_optimizers.Optimizer_Adagrad, optimizers.Adagrad),
    (book_optimizers.Optimizer_RMSprop, optimizers.RMSprop),
    (book_optimizers.Optimizer_Adam, optimizers.Adam),
)
_REGULARIZERS = tuple(f"{k}_regularizer_{n}" for k in ("weight", "bias") for n in ("l1", "l2"))


def _steps(samples: int, batch_size: int | None) -> int:
    """How many batches of ``batch_size`` cover ``samples`` (one without a batch size)."""
    if batch_size is None:
        return 1
    steps = samples // batch_size
    return steps + 1 if steps * batch_size < samples else steps


def _rows(data: Any) -> int | None:
    """How many samples ``data`` holds (its first dimension); None for a scalar or no array."""
    shape = getattr(data, "shape", None)
    if shape is not None:
        return int(shape[0]) if len(shape) else None
    try:
        return len(data)
    except TypeError:
        return None


def _batch(data: Any, step: int, batch_size: int | None) -> Any:
    return data if batch_size is None else data[step * batch_size : (step + 1) * batch_size]


class Model:
    """The book's model: ``add``, ``set``, ``finalize``, ``train``, ``evaluate``, ``predict``,
    the parameters' getters and setters, and saving in xpnn's format."""

    def __init__(self) -> None:
        self.layers: list = []
        self.softmax_classifier_output = None
        self.loss: Any = None
        self.optimizer: Any = None
        self.accuracy: Any = None

    def add(self, layer: Any) -> None:
        """Append a layer or activation."""
        self.layers.append(layer)

    def set(self, *, loss: Any = None, optimizer: Any = None, accuracy: Any = None) -> None:
        """Set the loss, the optimizer and the accuracy (any of them)."""
        for argument, part in (("loss", loss), ("optimizer", optimizer), ("accuracy", accuracy)):
            if isinstance(part, type):  # Loss_CategoricalCrossentropy without its ()
                raise TypeError(
                    f"{argument} must be an object, such as {part.__name__}(); got the class "
                    f"{part.__name__} itself"
                )
        if loss is not None:
            self.loss = loss
        if optimizer is not None:
            self.optimizer = optimizer
        if accuracy is not None:
            self.accuracy = accuracy

    def finalize(self) -> None:
        """Chain the layers (``prev``, ``next``), find the trainable ones and the output layer,
        and combine a Softmax output with categorical cross-entropy."""
        if not self.layers:
            raise ValueError("finalize: the model has no layers; add some first")
        self.input_layer = book_layers.Layer_Input()
        self.trainable_layers = []
        for i, layer in enumerate(self.layers):
            layer.prev = self.input_layer if i == 0 else self.layers[i - 1]
            if i < len(self.layers) - 1:
                layer.next = self.layers[i + 1]
            else:
                layer.next = self.loss
                self.output_layer_activation = layer
            if hasattr(layer, "weights"):
                self.trainable_layers.append(layer)
        if self.loss is not None:
            self.loss.remember_trainable_layers(self.trainable_layers)
        if isinstance(self.layers[-1], book_layers.Activation_Softmax) and isinstance(
            self.loss, book_losses.Loss_CategoricalCrossentropy
        ):
            self.softmax_classifier_output = (
                book_losses.Activation_Softmax_Loss_CategoricalCrossentropy()
            )

    def train(
        self,
        X: Any,
        y: Any,
        *,
        epochs: int = 1,
        batch_size: int | None = None,
        print_every: int = 1,
        validation_data: Any = None,
    ) -> None:
        """Train ``epochs`` epochs in batches, printing as the book's final code does: the
        epoch, a step line every ``print_every`` steps and at the last, the epoch's figures,
        and the validation's."""
        batch_size = self._check(X, y, "train", batch_size)
        epochs, print_every = (
            positive_int(epochs, "epochs"),
            positive_int(print_every, "print_every"),
        )
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise TypeError("validation_data must be a pair (X_val, y_val)")
            self._check(*validation_data, "train", None, "validation_data")
        self.accuracy.init(y)
        train_steps = _steps(len(X), batch_size)
        for epoch in range(1, epochs + 1):
            print(f"epoch: {epoch}")
            self.loss.new_pass()
            self.accuracy.new_pass()
            for step in range(train_steps):
                batch_X, batch_y = _batch(X, step, batch_size), _batch(y, step, batch_size)
                output = self.forward(batch_X, training=True)
                data_loss, regularization_loss = self.loss.calculate(
                    output, batch_y, include_regularization=True
                )
                loss = data_loss + regularization_loss
                predictions = self.output_layer_activation.predictions(output)
                accuracy = self.accuracy.calculate(predictions, batch_y)
                self.backward(output, batch_y)
                self.optimizer.pre_update_params()
                for layer in self.trainable_layers:
                    self.optimizer.update_params(layer)
                self.optimizer.post_update_params()
                if not step % print_every or step == train_steps - 1:
                    print(
                        f"step: {step}, acc: {accuracy:.3f}, loss: {loss:.3f} ("
                        f"data_loss: {data_loss:.3f}, reg_loss: {regularization_loss:.3f}), "
                        f"lr: {self.optimizer.current_learning_rate}"
                    )
            epoch_data_loss, epoch_regularization_loss = self.loss.calculate_accumulated(
                include_regularization=True
            )
            epoch_loss = epoch_data_loss + epoch_regularization_loss
            epoch_accuracy = self.accuracy.calculate_accumulated()
            print(
                f"training, acc: {epoch_accuracy:.3f}, loss: {epoch_loss:.3f} ("
                f"data_loss: {epoch_data_loss:.3f}, "
                f"reg_loss: {epoch_regularization_loss:.3f}), "
                f"lr: {self.optimizer.current_learning_rate}"
            )
            if validation_data is not None:
                self.evaluate(*validation_data, batch_size=batch_size)

    def _check(
        self, X: Any, y: Any, what: str, batch_size: int | None, data: str = "X and y"
    ) -> int | None:
        """The batch size, checked with the model and the data before ``what`` changes
        anything: the book's code would fail midway (a step made, an epoch trained) or deep
        inside NumPy."""
        missing = [name for name in ("loss", "accuracy") if getattr(self, name) is None]
        if what == "train" and self.optimizer is None:
            missing.append("optimizer")
        if missing:
            raise ValueError(
                f"the model has no {' or '.join(missing)}: call set(...) and finalize() before "
                f"{what}()"
            )
        if not hasattr(self, "trainable_layers"):
            raise ValueError(f"call finalize() before {what}()")
        rows = [_rows(X), _rows(y)]
        if None in rows or rows[0] != rows[1]:
            raise ValueError(f"{data} must have as many rows; got {rows[0]} and {rows[1]}")
        return None if batch_size is None else positive_int(batch_size, "batch_size")

    def evaluate(self, X_val: Any, y_val: Any, *, batch_size: int | None = None) -> None:
        """Print the loss and accuracy on ``X_val`` (dropout off): ``validation, acc: ...``."""
        batch_size = self._check(X_val, y_val, "evaluate", batch_size, "X_val and y_val")
        self.loss.new_pass()
        self.accuracy.new_pass()
        for step in range(_steps(len(X_val), batch_size)):
            batch_X, batch_y = _batch(X_val, step, batch_size), _batch(y_val, step, batch_size)
            output = self.forward(batch_X, training=False)
            self.loss.calculate(output, batch_y)
            predictions = self.output_layer_activation.predictions(output)
            self.accuracy.calculate(predictions, batch_y)
        validation_loss = self.loss.calculate_accumulated()
        validation_accuracy = self.accuracy.calculate_accumulated()
        print(f"validation, acc: {validation_accuracy:.3f}, loss: {validation_loss:.3f}")

    def predict(self, X: Any, *, batch_size: int | None = None) -> np.ndarray:
        """The model's outputs for ``X`` (dropout off), as one NumPy array."""
        output = [
            np.asarray(self.forward(_batch(X, step, batch_size), training=False))
            for step in range(_steps(len(X), batch_size))
        ]
        return np.vstack(output)

    def forward(self, X: Any, training: bool) -> Any:
        """Every layer's forward pass in turn; returns the last output."""
        self.input_layer.forward(X, training)
        for layer in self.layers:
            layer.forward(layer.prev.output, training)
        return layer.output

    def backward(self, output: Any, y: Any) -> None:
        """Every backward pass in reverse, starting from the loss (or the combined softmax and
        cross-entropy)."""
        if self.softmax_classifier_output is not None:
            self.softmax_classifier_output.backward(output, y)
            self.layers[-1].dinputs = self.softmax_classifier_output.dinputs
            for layer in reversed(self.layers[:-1]):
                layer.backward(layer.next.dinputs)
            return
        self.loss.backward(output, y)
        for layer in reversed(self.layers):
            layer.backward(layer.next.dinputs)

    # -- parameters and files --------------------------------------------------------------------

    def get_parameters(self) -> list[tuple[Any, Any]]:
        """``(weights, biases)`` of each trainable layer."""
        return [layer.get_parameters() for layer in self.trainable_layers]

    def set_parameters(self, parameters: list) -> None:
        """Give each trainable layer its ``(weights, biases)``; every shape is checked first."""
        parameters = list(parameters)
        if len(parameters) != len(self.trainable_layers):
            raise ValueError(
                f"parameters holds {len(parameters)} (weights, biases) pairs; the model has "
                f"{len(self.trainable_layers)} trainable layers"
            )
        for i, (pair, layer) in enumerate(zip(parameters, self.trainable_layers)):
            for name, value in zip(("weights", "biases"), pair):
                have = tuple(np.shape(value))
                want = tuple(getattr(layer._layer, name).shape)
                if have != want:
                    raise ValueError(f"parameters[{i}]: {name} of shape {have}; expected {want}")
        for pair, layer in zip(parameters, self.trainable_layers):
            layer.set_parameters(*pair)

    def save_parameters(self, path: str | os.PathLike) -> None:
        """Save the parameters alone, in xpnn's format."""
        self._as_xpnn().save_parameters(path)

    def load_parameters(self, path: str | os.PathLike) -> None:
        """Load parameters saved by ``save_parameters`` or ``save`` (checked before any
        change)."""
        mirror = self._as_xpnn()
        mirror.load_parameters(path)
        self.set_parameters(mirror.get_parameters())

    def save(self, path: str | os.PathLike) -> None:
        """Save the model, in xpnn's format: its layers, parameters, loss, accuracy, optimizer
        settings and the optimizer's state (step count, current learning rate and each layer's
        momentums or caches), so a loaded model goes on training as the saved one would, as
        the book's pickled model does."""
        mirror = self._as_xpnn()
        _keep_optimizer_state(self, mirror)
        kept = {"epoch": mirror.epochs_trained, _WIDE: _wide_states(self)}
        io.save_model(mirror, path, checkpoint=kept)

    @staticmethod
    def load(path: str | os.PathLike) -> Model:
        """A finalized model from a file written by ``save``, on the backend ``use`` chose.

        Raises ``xpnn.XpnnFileError`` for any file that cannot be loaded.
        """
        library, dtype = current()
        saved, kept = io.load_checkpoint(
            XpnnModel, path, backend=library.removesuffix("-exact"), dtype=dtype
        )
        model = Model()
        for layer in saved.layers:
            model.add(_book_layer(layer))
        model.set(
            loss=_book_part(saved.loss, _LOSSES),
            optimizer=_book_part(saved.optimizer, _OPTIMIZERS),
            accuracy=_book_accuracy(saved.accuracy),
        )
        model.finalize()
        _take_optimizer_state(saved, model)
        with reading(path):
            _take_wide_states(model, (kept or {}).get(_WIDE, {}))
        return model

    def _as_xpnn(self) -> XpnnModel:
        """An xpnn model with this model's layers, parameters and parts (what it saves)."""
        if not hasattr(self, "trainable_layers"):
            raise ValueError("the model is not finalized: call finalize() first")
        first = self.trainable_layers[0]._backend if self.trainable_layers else None
        library, dtype = current()
        backend = first or backend_for(library, dtype or "float32")
        mirror = XpnnModel(backend=backend, seed=0)
        for layer in self.layers:
            mirror.add(_xpnn_layer(layer))
        mirror.set(
            loss=_xpnn_part(self.loss, _LOSSES),
            optimizer=_xpnn_part(self.optimizer, _OPTIMIZERS),
            accuracy=_xpnn_accuracy(self.accuracy),
        )
        mirror.finalize()
        mirror.set_parameters([tuple(map(np.asarray, p)) for p in self.get_parameters()])
        return mirror


def _state_names(optimizer: Any) -> tuple[str, ...]:
    return tuple(getattr(optimizer, "state_names", ()))


def _keep_optimizer_state(model: Model, mirror: XpnnModel) -> None:
    """Give ``mirror`` (what ``save`` writes) the step count, rate and state of ``model``'s
    optimizer: each state of every trainable layer, in the order of the mirror's flat buffer
    (each layer's weights, then its biases). Float64 bias states (see ``Layer_Dense``) are
    kept in the model's dtype."""
    optimizer = model.optimizer
    if optimizer is None or mirror.optimizer is None:
        return
    mirror.optimizer.iterations = optimizer.iterations
    mirror.optimizer.current_learning_rate = optimizer.current_learning_rate
    buffer = mirror.network.parameters
    for name in _state_names(optimizer):
        pieces = []
        for layer in model.trainable_layers:
            state = getattr(getattr(layer, "_buffer", None), f"param_{name}", None)
            if state is None:
                break
            state = np.array(to_numpy(state))
            wide = (layer._wide_states or {}).get(f"bias_{name}")
            if wide is not None:
                state[layer._sizes[0] :] = to_numpy(wide).reshape(-1)
            pieces.append(state)
        else:
            if pieces:
                setattr(buffer, f"param_{name}", buffer.backend.asarray(np.concatenate(pieces)))


def _take_optimizer_state(saved: XpnnModel, model: Model) -> None:
    """Give ``model`` (a loaded book model) the optimizer state ``saved`` was loaded with."""
    optimizer = model.optimizer
    if optimizer is None or saved.optimizer is None:
        return
    optimizer.iterations = saved.optimizer.iterations
    optimizer.current_learning_rate = saved.optimizer.current_learning_rate
    buffer = saved.network.parameters
    for name in _state_names(optimizer):
        state = getattr(buffer, f"param_{name}", None)
        if state is None:
            continue
        state = to_numpy(state)
        offset = 0
        for layer in model.trainable_layers:
            size = int(layer._buffer.params.shape[0])
            piece = np.array(state[offset : offset + size])
            setattr(layer._buffer, f"param_{name}", layer._backend.asarray(piece))
            offset += size


#: The checkpoint entry that keeps the float64 bias states (see ``Layer_Dense``) whole.
_WIDE = "book_float64_bias_states"


def _wide_states(model: Model) -> dict[str, dict[str, list[float]]]:
    """Each trainable layer's float64 bias states, by the layer's place and the state's name,
    as JSON numbers: a float64 goes through JSON unchanged, so a loaded model's updates are the
    saved one's, not those of states rounded to the model's dtype."""
    kept = {}
    for k, layer in enumerate(model.trainable_layers):
        states = getattr(layer, "_wide_states", None) or {}
        values = {name: to_numpy(state).reshape(-1).tolist() for name, state in states.items()}
        if not all(np.isfinite(v).all() for v in values.values()):
            raise ValueError(
                f"trainable layer {k}'s bias states hold NaN or infinity: such a model cannot "
                "be saved"
            )
        if values:
            kept[str(k)] = values
    return kept


def _take_wide_states(model: Model, kept: Any) -> None:
    """Give ``model``'s Dense layers the float64 bias states ``_wide_states`` kept, checked
    (``Invalid`` names what does not fit)."""
    expect(isinstance(kept, dict), f"{_WIDE} is not a JSON object")
    names = {f"bias_{name}" for name in _state_names(model.optimizer)}
    for place, states in kept.items():
        k = int(place) if place.isdigit() else -1
        layer = model.trainable_layers[k] if 0 <= k < len(model.trainable_layers) else None
        expect(isinstance(layer, book_layers.Layer_Dense), f"{_WIDE}: no Dense layer {place!r}")
        width = layer._layer.n_neurons
        expect(
            isinstance(states, dict) and set(states) == names,
            f"{_WIDE}[{place!r}] must hold {sorted(names)}",
        )
        wide = {}
        for name, values in states.items():
            expect(
                isinstance(values, list)
                and len(values) == width
                and all(type(v) in (int, float) for v in values),
                f"{_WIDE}[{place!r}][{name!r}] must be a list of {width} numbers",
            )
            host = np.array(values, np.float64).reshape(1, width)
            wide[name] = layer._backend.asarray(host, dtype=layer._backend.xp.float64)
        if layer._backend.dtype_name != "float64":  # a float64 model keeps them in its buffer
            layer._wide_states = wide


def _xpnn_layer(layer: Any) -> Any:
    if isinstance(layer, book_layers.Layer_Dense):
        inner = layer._layer
        return layers.Dense(
            inner.n_inputs, inner.n_neurons, *(getattr(inner, r) for r in _REGULARIZERS)
        )
    if isinstance(layer, book_layers.Layer_Dropout):
        return layers.Dropout(1 - layer.rate)
    for book_kind, kind in _LAYERS:
        if isinstance(layer, book_kind):
            return kind()
    raise TypeError(f"save: the model holds a {type(layer).__name__}, which xpnn cannot save")


def _book_layer(layer: Any) -> Any:
    if isinstance(layer, layers.Dense):
        regularizers = tuple(getattr(layer, r) for r in _REGULARIZERS)
        weights, biases = (
            np.asarray(layer.backend.to_numpy(a)) for a in (layer.weights, layer.biases)
        )
        return book_layers.Layer_Dense._from_arrays(weights, biases, regularizers)
    if isinstance(layer, layers.Dropout):
        return book_layers.Layer_Dropout(layer.rate)
    for book_kind, kind in _LAYERS:
        if type(layer) is kind:
            return book_kind()
    raise TypeError(f"load: the file holds a {type(layer).__name__}, which the book lacks")


def _xpnn_part(part: Any, pairs: tuple) -> Any:
    if part is None:
        return None
    for book_kind, kind in pairs:
        if isinstance(part, book_kind):
            settings = part.config() if hasattr(part, "config") else {}
            return kind(**settings)
    raise TypeError(f"save: xpnn cannot save a {type(part).__name__}")


def _book_part(part: Any, pairs: tuple) -> Any:
    if part is None:
        return None
    for book_kind, kind in pairs:
        if type(part) is kind:
            settings = part.config() if hasattr(part, "config") else {}
            return book_kind(**settings)
    raise TypeError(f"load: the file holds a {type(part).__name__}, which the book lacks")


def _xpnn_accuracy(accuracy: Any) -> Any:
    if accuracy is None:
        return None
    if isinstance(accuracy, book_losses.Accuracy_Categorical):
        return metrics.CategoricalAccuracy(binary=bool(accuracy.binary))
    if isinstance(accuracy, book_losses.Accuracy_Regression):
        precision = accuracy.precision
        return metrics.RegressionAccuracy(None if precision is None else float(precision))
    raise TypeError(f"save: xpnn cannot save a {type(accuracy).__name__}")


def _book_accuracy(accuracy: Any) -> Any:
    if accuracy is None:
        return None
    if isinstance(accuracy, metrics.CategoricalAccuracy):
        return book_losses.Accuracy_Categorical(binary=accuracy.binary)
    result = book_losses.Accuracy_Regression()
    result.precision = accuracy.precision
    return result
