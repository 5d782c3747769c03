"""Model: layers in order, a loss, an optimizer and a metric, trained in batches on one backend."""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from typing import Any

import numpy as np

from . import progress
from ._checks import HasSettings, positive_int
from .activations import Softmax
from .backends import Backend, get_backend, to_numpy
from .backends.base import refuse_masked
from .data import prepare_inputs, prepare_targets
from .history import History
from .layers import Dropout, Layer
from .losses import CategoricalCrossentropy, Loss, SoftmaxCategoricalCrossentropy
from .metrics import Accuracy
from .optimizers import Optimizer

__all__ = ["Model", "NonFiniteLossError"]


class ParameterBuffer:
    """Every trainable array of a model in one flat buffer, and every gradient in another.

    Each layer's ``weights``, ``dweights``, ... become views into them, so an optimizer updates
    the whole model in a few whole-buffer operations.
    """

    parameter_names = (("param", "params", "dparams"),)

    def __init__(self, backend: Backend, layers: list[Layer]) -> None:
        self.backend = backend
        entries = [(layer, p, g) for layer in layers for _, p, g in layer.parameter_names]
        sizes = [math.prod(getattr(layer, p).shape) for layer, p, _ in entries]
        self.params = backend.zeros(sum(sizes))
        self.dparams = backend.zeros(sum(sizes))
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
        return [("param", self.params, self.dparams)]


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; training stopped."""

    def __init__(self, epoch: int, step: int | None, dtype: str | None = None) -> None:
        self.epoch, self.step = epoch, step
        where = f"epoch {epoch}, step {step}" if step is not None else f"epoch {epoch}"
        if dtype is not None:  # before any update: the learning rate cannot be the cause
            super().__init__(
                f"the loss became NaN or infinite at {where}, before any update: the model's "
                f"computation on this data overflows {dtype}. Inputs scaled to a smaller range "
                "usually help"
            )
            return
        kept = (
            "the parameters are those after the last finite step"
            if step is not None
            else "the parameters are those of the last report before it"
        )
        super().__init__(
            f"the loss became NaN or infinite at {where}; {kept}. A smaller learning rate, "
            "or inputs scaled to a smaller range, usually helps"
        )


class _EpochInProgress:
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


class _Snapshot:
    """A copy of what training changes (parameters, optimizer state, step and epoch counts)."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.take()

    def _arrays(self) -> dict[str, Any]:
        buffer = self.model._parameters
        states = tuple(f"_{name}" for name in self.model.optimizer.state_names)
        return {
            name: value
            for name, value in vars(buffer).items()
            if name == "params" or name.endswith(states)
        }

    def take(self) -> None:
        xp = self.model.backend.xp
        self.arrays = {k: xp.asarray(v, copy=True) for k, v in self._arrays().items()}
        optimizer = self.model.optimizer
        self.counts = (
            optimizer.iterations,
            optimizer.current_learning_rate,
            self.model.epochs_trained,
        )
        self.epoch_in_progress = self.model._epoch_in_progress  # never changed, only replaced

    def restore(self) -> None:
        current = self._arrays()
        for name, saved in self.arrays.items():
            current[name][...] = saved
        optimizer = self.model.optimizer
        optimizer.iterations, optimizer.current_learning_rate, self.model.epochs_trained = (
            self.counts
        )
        self.model._epoch_in_progress = self.epoch_in_progress


class _Best:
    """The best validation loss so far for early stopping, and the parameters that gave it."""

    def __init__(self) -> None:
        self.loss, self.epoch, self.params, self.waited = math.inf, 0, None, 0

    def stop(self, model: Model, history: History, patience: int) -> bool:
        """Note the latest epoch; True (with the best parameters back) once patience runs out."""
        loss = history["val_loss"][-1]
        buffer = model._parameters
        if loss < self.loss:
            self.loss, self.epoch, self.waited = loss, history["epoch"][-1], 0
            self.params = model.backend.xp.asarray(buffer.params, copy=True)
            return False
        self.waited += 1
        if self.waited < patience:
            return False
        buffer.params[...] = self.params
        return True


class _StopOnInterrupt:
    """While training, Ctrl-C asks to stop after the current step; a second one stops at once."""

    stopped = False

    def __enter__(self) -> _StopOnInterrupt:
        self._previous = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.stopped:
            raise KeyboardInterrupt
        self.stopped = True

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class Model:
    """A stack of layers trained with a loss, an optimizer and (optionally) an accuracy metric.

    Everything runs on one backend: ``"numpy"``, ``"cupy"``, ``"auto"`` or ``"strict"``. Initial
    weights and shuffles come from ``seed``, so the same seed starts every backend alike.
    """

    def __init__(
        self, backend: str | Backend = "numpy", *, seed: int | None = None, dtype: Any = None
    ) -> None:
        self.backend = get_backend(backend, dtype)
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.layers: list[Layer] = []
        self.loss: Loss | None = None
        self.optimizer: Optimizer | None = None
        self.accuracy: Accuracy | None = None
        self._parameters: ParameterBuffer | None = None
        self.epochs_trained = 0
        self._epoch_in_progress: _EpochInProgress | None = None

    def __repr__(self) -> str:
        layers = ", ".join(map(repr, self.layers))
        return (
            f"Model(backend={self.backend.name!r}, dtype={self.backend.dtype_name!r}, [{layers}])"
        )

    # -- building -------------------------------------------------------------------------------

    def add(self, layer: Layer) -> None:
        """Append ``layer``, a new one each time; it takes the model's backend and dtype at
        ``finalize``.

        A layer belongs to one model: one already in this model or in another is refused.
        """
        if not isinstance(layer, Layer):
            raise TypeError(f"layer must be an xpnn layer (Dense, ReLU, ...); got {layer!r}")
        layer.claim(self, "layer")  # the layer knows its model: no search through the list
        self.layers.append(layer)
        self._parameters = None

    def set(
        self,
        *,
        loss: Loss | None = None,
        optimizer: Optimizer | None = None,
        accuracy: Accuracy | None = None,
    ) -> None:
        """Choose the loss, the optimizer and the accuracy metric (any of them, by keyword)."""
        for value, kind, argument in (
            (loss, Loss, "loss"),
            (optimizer, Optimizer, "optimizer"),
            (accuracy, Accuracy, "accuracy"),
        ):
            if value is not None and not isinstance(value, kind):
                raise TypeError(f"{argument} must be an xpnn {kind.__name__}; got {value!r}")
        changes = [
            (argument, value, getattr(self, argument))
            for argument, value in (
                ("loss", loss),
                ("optimizer", optimizer),
                ("accuracy", accuracy),
            )
            if value is not None and value is not getattr(self, argument)
        ]
        for argument, value, _ in changes:  # every check before any change
            if not value.model_is(self):
                value.claim(self, argument)
        for argument, value, old in changes:
            if old is not None:
                old.release(self)
            setattr(self, argument, value)
        self._parameters = None

    def finalize(self) -> None:
        """Check the model, move everything onto its backend and draw initial weights from its seed.

        A softmax output with categorical cross-entropy trains through their combined gradient.
        """
        if not self.layers:
            raise ValueError("the model has no layers: add() some before finalize()")
        if self.loss is None:
            raise ValueError("the model has no loss: call set(loss=...) before finalize()")
        if isinstance(self.loss, SoftmaxCategoricalCrossentropy):
            raise ValueError(
                "set loss=CategoricalCrossentropy() with a Softmax output layer; the model "
                "combines them itself"
            )
        self._check_sizes()
        self._check_coherence()
        self._check_parts()
        self._check_settings()
        self._parameters = None  # a failure below leaves the model to be finalized again
        for layer in self.layers:
            layer.build(self.backend, self.rng)
        self.loss.build(self.backend)
        if self.accuracy is not None:
            self.accuracy.build(self.backend)
        self._combined = None
        if isinstance(self.layers[-1], Softmax) and isinstance(self.loss, CategoricalCrossentropy):
            self._combined = SoftmaxCategoricalCrossentropy(backend=self.backend)
        self._trainable = [layer for layer in self.layers if layer.parameter_names]
        self._parameters = ParameterBuffer(self.backend, self._trainable)
        self.epochs_trained = 0
        self._epoch_in_progress = None
        through = self.layers[:-1] if self._combined is not None else self.layers
        first = next((i for i, layer in enumerate(through) if layer.parameter_names), None)
        self._first_trainable = None if first is None else through[first]
        self._backward_chain = through[::-1] if first is None else through[:first:-1]

    def _check_sizes(self) -> None:
        width, previous = None, None
        for index, layer in enumerate(self.layers):
            n_inputs = getattr(layer, "n_inputs", None)
            if n_inputs is not None and width is not None and n_inputs != width:
                raise ValueError(
                    f"layer {index} ({layer!r}) takes {n_inputs} inputs but layer "
                    f"{previous} gives {width} outputs"
                )
            if hasattr(layer, "n_neurons"):
                width, previous = layer.n_neurons, f"{index} ({layer!r})"

    def _check_coherence(self) -> None:
        """The output layer, the loss and the metric fit together; else say what to change."""
        output = self.layers[-1]
        if isinstance(output, Dropout):
            raise ValueError(
                "Dropout cannot be the output layer (it would drop outputs while training): "
                "put it before the last Dense layer"
            )
        problem = self.loss.output_problem(output)
        if problem is None and self.accuracy is not None:
            problem = self.accuracy.output_problem(output, self.loss)
        if problem is None and isinstance(output, Softmax) and self.n_outputs == 1:
            problem = (
                "a Softmax over 1 output always gives 1: give the last Dense layer one output "
                "per class, or use a Sigmoid output with BinaryCrossentropy for one yes/no output"
            )
        if problem is not None:
            raise ValueError(problem)

    def _check_parts(self) -> None:
        """Every layer once, and every part this model's own (the list may have been edited)."""
        seen: set[int] = set()
        for index, layer in enumerate(self.layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"layer {index} is not an xpnn layer: {layer!r}")
            if id(layer) in seen:
                raise ValueError(f"layer {index}: this {layer!r} is in the model twice")
            seen.add(id(layer))
        for argument, part in [
            *((f"layer {i}", layer) for i, layer in enumerate(self.layers)),
            ("loss", self.loss),
            ("optimizer", self.optimizer),
            ("accuracy", self.accuracy),
        ]:
            if part is not None and not part.model_is(self):
                part.claim(self, argument)

    def _check_settings(self) -> None:
        """Every float setting as the model's dtype holds it (see ``HasSettings``)."""
        dtype = self.backend.dtype_name
        for part in (*self.layers, self.optimizer, self.accuracy):
            if isinstance(part, HasSettings):
                part.check_settings(dtype)

    def _require_finalized(self, what: str) -> None:
        if self._parameters is None:
            raise ValueError(f"call finalize() before {what}()")

    @property
    def n_inputs(self) -> int | None:
        """Features per sample that the first layer with a fixed width takes."""
        return next((layer.n_inputs for layer in self.layers if hasattr(layer, "n_inputs")), None)

    @property
    def n_outputs(self) -> int | None:
        """Width of the model's output, as set by its last layer with a fixed width."""
        widths = [layer.n_neurons for layer in self.layers if hasattr(layer, "n_neurons")]
        return widths[-1] if widths else None

    # -- the passes -------------------------------------------------------------------------------

    def forward(self, X: Any, training: bool = False) -> Any:
        """Run ``X`` through every layer and return the last layer's output."""
        for layer in self.layers:
            X = layer.forward(X, training)
        return X

    def backward(self, output: Any, y: Any) -> None:
        """Gradients of the loss for every layer, from the output back to the first layer.

        Nothing needs the gradient of the data, so the first layer with parameters computes
        only its own gradients, and layers before it none.
        """
        if self._combined is not None:
            dvalues = self._combined.backward(output, y)
        else:
            dvalues = self.loss.backward(output, y)
        for layer in self._backward_chain:
            dvalues = layer.backward(dvalues)
        if self._first_trainable is not None:
            self._first_trainable.backward(dvalues, need_dinputs=False)

    # -- training and inference -----------------------------------------------------------------

    def train(
        self,
        X: Any,
        y: Any,
        *,
        epochs: int = 1,
        batch_size: int | None = None,
        shuffle: bool = True,
        validation_data: tuple[Any, Any] | None = None,
        early_stopping: int | None = None,
        checkpoint: str | os.PathLike | None = None,
        checkpoint_every: int = 1,
        print_every: int = 100,
        verbose: bool | str = True,
    ) -> History:
        """Train for ``epochs`` more passes over ``(X, y)`` in batches of ``batch_size``
        (None: all at once), and return the per-epoch History.

        With ``shuffle`` each epoch visits the samples in a fresh order drawn from the model's
        seed; without it, in the order given, as the book's loop. Loss and accuracy are summed
        on the device and read on the host once per report (every ``print_every`` epochs and
        the last), when ``validation_data`` is evaluated too. ``verbose``: True shows a progress
        bar on a terminal and the book's line per report elsewhere; "bar" or "lines" choose;
        False is silent.

        ``early_stopping=patience`` evaluates the validation data every epoch and stops when
        its loss has not improved for ``patience`` epochs, restoring the best parameters.

        ``checkpoint=path`` saves the model with its training state (optimizer state, step and
        epoch counts, random generators) every ``checkpoint_every`` epochs, at the end and on
        Ctrl-C; ``Model.load(path)`` then carries on exactly where it stopped. The path is
        checked before the first step: a regular file or none yet, in a folder that takes new
        files.

        A loss that turns NaN or infinite stops training with NonFiniteLossError. Ctrl-C stops
        after the current step and returns the History so far; an epoch it stopped inside is
        finished by the next ``train`` (of this model, or of one loaded from the checkpoint),
        from the next step, in the same order, as the first of its ``epochs``; it needs the
        same X (``discard_epoch_in_progress()`` forgets it). Epochs are numbered from the
        model's first, so a resumed run goes on counting.
        """
        self._require_finalized("train")
        if self.optimizer is None:
            raise ValueError("the model has no optimizer: call set(optimizer=...) before train()")
        epochs = positive_int(epochs, "epochs")
        print_every = positive_int(print_every, "print_every")
        if batch_size is not None:
            batch_size = positive_int(batch_size, "batch_size")
        if not isinstance(shuffle, bool):
            raise TypeError(f"shuffle must be True or False; got {shuffle!r}")
        display = progress.mode(verbose)
        checkpoint_every = positive_int(checkpoint_every, "checkpoint_every")
        if checkpoint is not None:
            if not isinstance(checkpoint, (str, os.PathLike)):
                raise TypeError(f"checkpoint must be a file path; got {checkpoint!r}")
            from .io import _check_writable  # io builds models: imported here, not at the top

            _check_writable(checkpoint, "checkpoint")
        if early_stopping is not None:
            early_stopping = positive_int(early_stopping, "early_stopping")
            if validation_data is None:
                raise ValueError("early_stopping watches the validation loss: give validation_data")
        self._check_settings()  # the optimizer may have been set, or a setting changed, since
        X, y = self._prepare(X, y)
        unfinished = self._epoch_in_progress
        if unfinished is not None and X.shape[0] != unfinished.samples:
            raise ValueError(
                f"X has {X.shape[0]} samples, but epoch {self.epochs_trained + 1} stopped after "
                f"{unfinished.done} of {unfinished.samples} samples (Ctrl-C): train on the same X "
                f"and y to finish it, or call discard_epoch_in_progress() first"
            )
        validation = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise TypeError("validation_data must be a pair (X_val, y_val)")
            validation = self._prepare(*validation_data, argument="validation_data")
        if self.accuracy is not None:
            self.accuracy.init(y)

        backend = self.backend
        samples = X.shape[0]
        batch_size = samples if batch_size is None else min(batch_size, samples)
        history = History()
        pending: list[tuple[int, list[Any], int, float, float]] = []
        regularized = any(getattr(layer, "regularized", False) for layer in self._trainable)
        first, final = self.epochs_trained + 1, self.epochs_trained + epochs
        shown = progress.Progress(
            display,
            first,
            final,
            f"xpnn: training on {backend.name} ({backend.device}, {backend.dtype_name}): "
            f"{samples} samples, {-(-samples // batch_size)} steps per epoch",
        )
        # Off the host a non-finite loss is seen at a report; the state of the last good
        # report is kept to go back to.
        snapshot = None if backend.on_host else _Snapshot(self)
        best = _Best() if early_stopping else None
        started = time.perf_counter()
        try:
            with _StopOnInterrupt() as interrupt:
                for epoch in range(first, final + 1):
                    sums, compared = self._train_epoch(X, y, batch_size, shuffle, epoch, interrupt)
                    unfinished = self._epoch_in_progress
                    if unfinished is not None:  # stopped inside the epoch: next train ends it
                        self._record(history, pending, None, snapshot)
                        if checkpoint is not None:
                            self._checkpoint(checkpoint)
                        shown.message(
                            f"xpnn: interrupted in epoch {epoch} after {unfinished.done} of "
                            f"{samples} samples (step {self.optimizer.iterations}); train() "
                            f"finishes the epoch"
                        )
                        break
                    self.epochs_trained = epoch
                    seconds = time.perf_counter() - started
                    lr = self.optimizer.current_learning_rate
                    pending.append((epoch, sums, compared, lr, seconds))
                    shown.epoch()
                    reported = epoch % print_every == 0 or epoch == final
                    saving = checkpoint is not None and (
                        epoch % checkpoint_every == 0 or epoch == final
                    )
                    if reported or saving or best is not None:
                        extra = self._sums(*validation, batch_size) if validation else None
                        self._record(history, pending, extra, snapshot)
                        if reported:
                            shown.report(history, regularized)
                    if saving:  # after the report: a non-finite loss is never saved
                        self._checkpoint(checkpoint)
                    if best is not None and best.stop(self, history, early_stopping):
                        shown.message(
                            f"xpnn: early stop at epoch {epoch}: no better validation loss "
                            f"for {early_stopping} epochs; restored the best, epoch {best.epoch}"
                        )
                        break
                    if interrupt.stopped:  # at the epoch's last step: the epoch is whole
                        self._record(history, pending, None, snapshot)
                        if checkpoint is not None and not saving:
                            self._checkpoint(checkpoint)
                        shown.message(
                            f"xpnn: interrupted at the end of epoch {epoch} "
                            f"(step {self.optimizer.iterations})"
                        )
                        break
            self._record(history, pending, None, snapshot)
        finally:
            shown.close()
        return history

    def _checkpoint(self, path: str | os.PathLike) -> None:
        from .io import save_model  # io builds models: imported here, not at the top

        save_model(self, path, checkpoint={"epoch": self.epochs_trained})

    def _train_epoch(
        self, X: Any, y: Any, batch_size: int, shuffle: bool, epoch: int, interrupt: Any
    ) -> tuple[list[Any], int]:
        """One pass over the data, or the rest of the one Ctrl-C stopped; its sums stay on the
        device. Stopped inside it, it leaves ``_epoch_in_progress`` to go on from."""
        backend, xp = self.backend, self.backend.xp
        optimizer, parameters = self.optimizer, self._parameters
        samples = X.shape[0]
        unfinished, self._epoch_in_progress = self._epoch_in_progress, None
        if unfinished is None:
            host_order = self.rng.permutation(samples) if shuffle else None
            begin, steps, compared = 0, 0, 0
            loss_sum, correct = backend.zeros(()), backend.zeros((), backend.index_dtype)
        else:  # the epoch's own order and sums, whatever ``shuffle`` says now
            host_order, begin, steps = unfinished.order, unfinished.done, unfinished.steps
            loss_sum, correct = unfinished.loss_sum, unfinished.correct
            compared = unfinished.compared
        # Drawn on the host from the model's generator, so every backend shuffles alike.
        order = None if host_order is None else backend.asarray(host_order, backend.index_dtype)
        for step, start in enumerate(range(begin, samples, batch_size), steps + 1):
            stop = min(start + batch_size, samples)
            if order is None:
                batch_X, batch_y = X[start:stop, ...], y[start:stop, ...]
            else:
                indices = order[start:stop]
                batch_X, batch_y = xp.take(X, indices, axis=0), xp.take(y, indices, axis=0)

            output = self.forward(batch_X, training=True)
            batch_loss = xp.sum(self.loss.forward(output, batch_y))
            if backend.on_host and not math.isfinite(batch_loss):
                # Host memory: reading the loss costs nothing, so stop before the update.
                first = optimizer.iterations == 0
                raise NonFiniteLossError(epoch, step, backend.dtype_name if first else None)
            loss_sum = loss_sum + batch_loss
            if self.accuracy is not None:
                right, count = self._count_correct(output, batch_y)
                correct, compared = correct + right, compared + count
            self.backward(output, batch_y)

            optimizer.pre_update_params()
            optimizer.update_params(parameters)
            optimizer.post_update_params()
            if interrupt.stopped:
                if stop < samples:
                    self._epoch_in_progress = _EpochInProgress(
                        samples, stop, step, host_order, loss_sum, correct, compared
                    )
                break
        return [loss_sum / samples, correct, self.regularization_loss()], compared

    def discard_epoch_in_progress(self) -> None:
        """Forget the rest of an epoch that Ctrl-C stopped, so the next ``train`` starts a new
        one (with the next order the seed draws): to train on other data, for instance."""
        self._epoch_in_progress = None

    def _count_correct(self, output: Any, y: Any) -> tuple[Any, int]:
        """Right predictions in a batch (an integer, on the device) and how many were compared."""
        comparisons = self.accuracy.compare(self.layers[-1].predictions(output), y)
        return self.backend.xp.count_nonzero(comparisons), math.prod(comparisons.shape)

    def regularization_loss(self) -> Any:
        """The regularizers' penalty summed over the layers, a 0-d array on the device."""
        total = self.backend.zeros(())
        for layer in self._trainable:
            total = total + self.loss.regularization_loss(layer)
        return total

    def _sums(self, X: Any, y: Any, batch_size: int | None) -> tuple[list[Any], int]:
        """Mean data loss and right predictions over ``(X, y)``, left on the device."""
        xp = self.backend.xp
        loss_sum = self.backend.zeros(())
        correct, compared = self.backend.zeros((), self.backend.index_dtype), 0
        for batch_X, batch_y in self._batches(X, y, batch_size):
            output = self.forward(batch_X)
            loss_sum = loss_sum + xp.sum(self.loss.forward(output, batch_y))
            if self.accuracy is not None:
                right, count = self._count_correct(output, batch_y)
                correct, compared = correct + right, compared + count
        return [loss_sum / X.shape[0], correct], compared

    def _record(
        self,
        history: History,
        pending: list,
        validation: tuple | None,
        snapshot: _Snapshot | None = None,
    ) -> None:
        """Read the pending epochs' figures, and the validation sums, in one transfer.

        A non-finite loss among them restores ``snapshot`` (taken at the last good report)
        and raises NonFiniteLossError; otherwise the snapshot moves up to now.
        """
        if not pending:
            return
        arrays = [a for _, sums, *_ in pending for a in sums]
        if validation is not None:
            arrays += validation[0]
        values = self._read(arrays)
        for index, (epoch, *_) in enumerate(pending):
            if not math.isfinite(values[3 * index]):
                pending.clear()
                if snapshot is not None:
                    snapshot.restore()
                raise NonFiniteLossError(epoch, None)
        if snapshot is not None:
            snapshot.take()
        values = iter(values)
        for epoch, _, compared, learning_rate, seconds in pending:
            data_loss, correct, regularization = next(values), next(values), next(values)
            history.append(
                epoch=epoch,
                loss=data_loss + regularization,
                data_loss=data_loss,
                regularization_loss=regularization,
                accuracy=correct / compared if compared else math.nan,
                learning_rate=learning_rate,
                seconds=seconds,
            )
        if validation is not None:
            data_loss, correct = next(values), next(values)
            compared = validation[1]
            history["val_data_loss"][-1] = data_loss
            history["val_loss"][-1] = data_loss + history["regularization_loss"][-1]
            history["val_accuracy"][-1] = correct / compared if compared else math.nan
        pending.clear()

    def _read(self, arrays: list[Any]) -> list[float]:
        """0-d device arrays as Python floats, in one transfer to the host."""
        xp = self.backend.xp
        return to_numpy(xp.stack([xp.astype(a, xp.float64) for a in arrays])).tolist()

    def _prepare(self, X: Any, y: Any, argument: str = "") -> tuple[Any, Any]:
        names = (f"{argument}[0]", f"{argument}[1]") if argument else ("X", "y")
        X = prepare_inputs(self.backend, X, self.n_inputs, names[0])
        y = prepare_targets(
            self.backend,
            y,
            X.shape[0],
            self.n_outputs,
            self.loss,
            self.layers[-1].output_range,
            names[1],
            binary=self.accuracy is not None and self.accuracy.binary_targets,
        )
        return X, y

    def evaluate(self, X: Any, y: Any, *, batch_size: int | None = None) -> dict[str, float]:
        """Loss (data and regularization) and accuracy over ``(X, y)``, without training."""
        self._require_finalized("evaluate")
        X, y = self._prepare(X, y)
        (data_loss, correct), compared = self._sums(X, y, batch_size)
        data_loss, correct, regularization = self._read(
            [data_loss, correct, self.regularization_loss()]
        )
        if not math.isfinite(data_loss):
            raise ValueError(
                f"X, y: the loss over these data is {data_loss}: the model's computation "
                f"overflows {self.backend.dtype_name} on them; scale X (and y) to a smaller range"
            )
        result = {
            "loss": data_loss + regularization,
            "data_loss": data_loss,
            "regularization_loss": regularization,
        }
        if self.accuracy is not None:
            result["accuracy"] = correct / compared
        return result

    def predict(self, X: Any, *, batch_size: int | None = None) -> Any:
        """The model's outputs for ``X``, as an array of the model's backend."""
        self._require_finalized("predict")
        X = prepare_inputs(self.backend, X, self.n_inputs)
        xp = self.backend.xp
        outputs = [self.forward(batch_X) for batch_X, _ in self._batches(X, None, batch_size)]
        outputs = outputs[0] if len(outputs) == 1 else xp.concat(outputs, axis=0)
        if not self._read([xp.all(xp.isfinite(outputs))])[0]:  # one read per call
            raise ValueError(
                f"X: the model's outputs for it hold NaN or infinity: its computation overflows "
                f"{self.backend.dtype_name} on these inputs; scale X to a smaller range"
            )
        return outputs

    def _batches(self, X: Any, y: Any, batch_size: int | None):
        samples = X.shape[0]
        size = samples if batch_size is None else positive_int(batch_size, "batch_size")
        for start in range(0, samples, size):
            stop = min(start + size, samples)
            yield X[start:stop, ...], None if y is None else y[start:stop, ...]

    # -- saving and loading -----------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Save the architecture (JSON) and the parameters in one safetensors file, atomically.

        No pickle: loading it runs no code. See ``Model.load``.
        """
        from .io import save_model

        save_model(self, path)

    @classmethod
    def load(
        cls, path: str | os.PathLike, backend: str | Backend | None = None, dtype: Any = None
    ) -> Model:
        """A model from a file written by ``save`` or a ``train`` checkpoint, on ``backend``
        (NumPy by default; any backend loads any file). A checkpoint carries on training
        exactly where it stopped. Any unloadable file raises ``xpnn.XpnnFileError``.
        """
        from .io import load_model

        return load_model(path, backend, dtype)

    def save_parameters(self, path: str | os.PathLike) -> None:
        """Save the parameters alone (the book's name), in the same safe format."""
        from .io import save_parameters

        save_parameters(self, path)

    def load_parameters(self, path: str | os.PathLike) -> None:
        """Load parameters saved by ``save_parameters`` (or ``save``) into this model; every
        count and shape is checked before anything changes."""
        from .io import load_parameters

        load_parameters(self, path)

    # -- parameters -------------------------------------------------------------------------------

    def get_parameters(self) -> list[tuple[np.ndarray, ...]]:
        """Each trainable layer's parameters, ``(weights, biases)``, as NumPy copies."""
        self._require_finalized("get_parameters")
        return [
            tuple(np.array(to_numpy(getattr(layer, p))) for _, p, _ in layer.parameter_names)
            for layer in self._trainable
        ]

    def set_parameters(self, parameters: list[tuple[Any, ...]]) -> None:
        """Replace the parameters with ``parameters``, shaped as ``get_parameters`` returns them.

        Every shape is checked before anything is written.
        """
        self._require_finalized("set_parameters")
        parameters = list(parameters)
        if len(parameters) != len(self._trainable):
            raise ValueError(
                f"parameters must hold {len(self._trainable)} entries, one per layer with "
                f"parameters; got {len(parameters)}"
            )
        moves = []
        for index, (layer, values) in enumerate(zip(self._trainable, parameters)):
            values = tuple(values)
            if len(values) != len(layer.parameter_names):
                raise ValueError(
                    f"parameters[{index}] must hold {len(layer.parameter_names)} arrays for "
                    f"{layer!r}; got {len(values)}"
                )
            for (_, p, _), value in zip(layer.parameter_names, values):
                target = getattr(layer, p)
                argument = f"parameters[{index}] {p} of {layer!r}"
                moves.append((target, self._parameter(value, argument, target)))
        for target, value in moves:
            target[...] = self.backend.asarray(value)

    def _parameter(self, value: Any, argument: str, target: Any) -> np.ndarray:
        """``value`` on the host in the model's dtype, checked to hold real numbers of the
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
        dtype = self.backend.dtype_name
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
