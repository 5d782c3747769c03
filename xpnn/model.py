"""Model: layers in order, a loss, an optimizer and a metric, trained in batches on one backend.

The book's API lives here: add, set, finalize, forward, backward, train, evaluate, predict,
parameters, save and load. ``training`` holds the loop; ``building`` the checks and the
parameter buffer; ``io`` the files.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import numpy as np

from . import building, data, distributed, io, progress, summary, training
from ._checks import seed_value, shown
from .backends import Backend, get_backend, to_numpy
from .backends.base import auto_choice
from .history import History
from .layers import Layer
from .losses import Loss
from .metrics import Accuracy
from .optimizers import Optimizer
from .training import NonFiniteLossError

__all__ = ["Model", "NonFiniteLossError"]


class Model:
    """A stack of layers trained with a loss, an optimizer and (optionally) an accuracy metric.

    Everything runs on one backend: ``"numpy"``, ``"cupy"``, ``"torch"`` (or ``"torch:<device>"``),
    ``"auto"`` or ``"strict"``. Initial weights and shuffles come from ``seed``, so the same seed
    starts every backend alike.

    Examples:
        >>> import xpnn
        >>> from xpnn.datasets import spiral_data
        >>> X, y = spiral_data(samples=100, classes=3, seed=0)
        >>> model = xpnn.Model(seed=0)
        >>> model.add(xpnn.Dense(2, 64))
        >>> model.add(xpnn.ReLU())
        >>> model.add(xpnn.Dense(64, 3))
        >>> model.add(xpnn.Softmax())
        >>> model.set(
        ...     loss=xpnn.CategoricalCrossentropy(),
        ...     optimizer=xpnn.Adam(learning_rate=0.02),
        ...     accuracy=xpnn.CategoricalAccuracy(),
        ... )
        >>> model.finalize()
        >>> history = model.train(X, y, epochs=10, batch_size=128, verbose=False)
        >>> len(history), history["epoch"][-1]
        (10, 10)
        >>> model.predict(X).shape
        (300, 3)
    """

    def __init__(
        self, backend: str | Backend = "numpy", *, seed: int | None = None, dtype: Any = None
    ) -> None:
        #: Why ``backend="auto"`` chose as it did, shown with the first progress or summary shown.
        self._auto_note = progress.Note()
        if isinstance(backend, str) and backend == "auto":
            backend, self._auto_note.text = auto_choice()
        self.backend = get_backend(backend, dtype)
        self.seed = seed_value(seed)
        self.rng = np.random.default_rng(self.seed)
        self.layers: list[Layer] = []
        self.loss: Loss | None = None
        self.optimizer: Optimizer | None = None
        self.accuracy: Accuracy | None = None
        #: The book's name for the output layer (set by ``finalize``): its ``predictions``
        #: turns outputs into classes (Softmax, Sigmoid) or values.
        self.output_layer_activation: Layer | None = None
        self._network: building.Network | None = None
        #: What the last ``finalize`` laid out (its network, layers and parts), for the next.
        self._finalized: tuple[building.Network, tuple[Layer, ...], tuple[Any, ...]] | None = None

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
            raise TypeError(f"layer must be an xpnn layer (Dense, ReLU, ...); got {shown(layer)}")
        layer.claim(self, "layer")  # the layer knows its model: no search through the list
        self.layers.append(layer)
        self._network = None

    def set(
        self,
        *,
        loss: Loss | None = None,
        optimizer: Optimizer | None = None,
        accuracy: Accuracy | None = None,
    ) -> None:
        """Choose the loss, the optimizer and the accuracy metric (any of them, by keyword)."""
        building.take_parts(self, loss=loss, optimizer=optimizer, accuracy=accuracy)
        self._network = None

    def finalize(self) -> None:
        """Check the model, move everything onto its backend and draw initial weights from its seed.

        A softmax output with categorical cross-entropy trains through their combined gradient.

        Called again, it keeps what training (or loading) made. With nothing added or set since,
        nothing changes. After ``add`` or ``set``, the layers it built before keep their
        parameters (a Dropout its masks' seed and count) and only new ones draw theirs; where
        the layers with parameters and the optimizer are the same, the optimizer's state and
        the epoch count go on too, else they start afresh (a new optimizer from step 0).
        """
        parts = (self.loss, self.optimizer, self.accuracy)
        before = self._finalized
        if (
            self._network is not None
            and before is not None
            and _same(before[1], self.layers)
            and _same(before[2], parts)
        ):
            return  # nothing added or set since: the parameters and training state stay
        building.check_model(self)
        self._network = None  # a failure below leaves the model to be finalized again
        built = () if before is None else before[1]
        for layer in self.layers:
            if not any(layer is kept for kept in built):
                layer.build(self.backend, self.rng)
        self.loss.build(self.backend)
        if self.accuracy is not None:
            self.accuracy.build(self.backend)
        # With the combined softmax and loss too, the last layer is the Softmax that predicts.
        self.output_layer_activation = self.layers[-1]
        network = building.wire(self)
        optimizer = self.optimizer
        if before is not None and optimizer is not None and before[2][1] is optimizer:
            old = before[0]
            if _same(old.trainable, network.trainable):  # its state fits: it goes on
                for name in optimizer.kept_states():
                    state = getattr(old.parameters, f"param_{name}", None)
                    if state is not None:
                        setattr(network.parameters, f"param_{name}", state)
                network.epochs_trained = old.epochs_trained
            else:  # other parameters: it starts afresh, as a new one would
                optimizer.iterations, optimizer.scratch = 0, {}
                optimizer.current_learning_rate = optimizer.learning_rate
        self._network = network
        self._finalized = (network, tuple(self.layers), parts)

    @property
    def network(self) -> building.Network | None:
        """What ``finalize`` laid out (an ``xpnn.Network``): the paths of the passes, the
        parameter buffer and the training state; None before ``finalize``."""
        return self._network

    @property
    def epochs_trained(self) -> int:
        """Epochs trained since ``finalize`` (or in the run a loaded checkpoint saved): the
        next ``train`` numbers its epochs from here."""
        return 0 if self._network is None else self._network.epochs_trained

    @epochs_trained.setter
    def epochs_trained(self, value: int) -> None:
        if self._network is None:
            raise ValueError("call finalize() before setting epochs_trained")
        self._network.epochs_trained = value

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
            X = building.passed_on(layer, layer.forward(X, training), "forward", "output")
        return X

    def backward(self, output: Any, y: Any) -> None:
        """Gradients of the loss for every layer, from the output back to the first layer.

        Nothing needs the gradient of the data, so the first layer with parameters computes
        only its own gradients, and layers before it none.
        """
        building.finalized(self, "backward").backward(output, y)

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
        checkpoint: str | os.PathLike[str] | None = None,
        checkpoint_every: int | None = None,
        print_every: int = 100,
        verbose: bool | str = True,
        comm: Any = None,
        shard: bool = False,
    ) -> History:
        """Train for ``epochs`` more passes over ``(X, y)`` in batches of ``batch_size``
        (None: all at once), and return the per-epoch History (the guide "Model" in docs/).

        ``shuffle``: a fresh order each epoch, drawn from the model's seed (False: the order
        given, as the book's loop). Figures stay on the device until a report (every
        ``print_every`` epochs and the last). ``validation_data`` is evaluated every epoch;
        ``early_stopping=patience`` stops when its loss has not improved for ``patience``
        epochs, restoring the best parameters. ``verbose``: True a bar on a terminal or in a
        notebook, the book's lines elsewhere; "bar" or "lines" choose; False is silent.
        ``checkpoint=path`` saves as ``save`` does every ``checkpoint_every`` epochs (None:
        each), at the end and on Ctrl-C (the path is checked before the first step). ``comm``
        (an mpi4py communicator) trains data-parallel over its processes, each rank on its
        share of every global batch (``xpnn.distributed``); with ``shard=True`` each rank passes
        only its own part of the data (and of ``validation_data``), and a global batch takes
        from every part (``xpnn.sharding``).

        A NaN or infinite loss raises NonFiniteLossError. Ctrl-C stops after the current step
        and returns the History so far; the next ``train`` on the same X finishes an epoch it
        stopped inside (``discard_epoch_in_progress()`` forgets it). Epochs are numbered from
        the model's first, so a resumed run goes on counting.
        """
        # Checked here, not in the loop: under MPI every rank but the first trains with
        # checkpoint=None and the same checkpoint_every.
        if checkpoint_every is not None and checkpoint is None:
            raise ValueError(
                "checkpoint_every says how often checkpoint is written: give checkpoint=path too"
            )
        run = training.train
        if comm is not None:
            run = functools.partial(distributed.train, comm=comm, shard=shard)
        elif shard is not False:
            raise ValueError(f"shard={shard!r} shares the data among processes: it needs comm")
        return run(
            self, X, y, epochs=epochs, batch_size=batch_size, shuffle=shuffle,
            validation_data=validation_data, early_stopping=early_stopping, checkpoint=checkpoint,
            checkpoint_every=checkpoint_every, print_every=print_every, verbose=verbose,
            note=self._auto_note,
        )  # fmt: skip

    def discard_epoch_in_progress(self) -> None:
        """Forget the rest of an epoch that Ctrl-C stopped, so the next ``train`` starts a new
        one (with the next order the seed draws): to train on other data, for instance."""
        if self._network is not None:
            self._network.epoch_in_progress = None

    def regularization_loss(self) -> Any:
        """The regularizers' penalty summed over the layers, a 0-d array on the device."""
        return building.finalized(self, "regularization_loss").regularization_loss()

    def evaluate(
        self,
        X: Any,
        y: Any,
        *,
        batch_size: int | None = None,
        verbose: bool = False,
        comm: Any = None,
        shard: bool = False,
    ) -> dict[str, float]:
        """Loss (data and regularization) and accuracy over ``(X, y)``, without training.

        ``verbose=True`` also prints the book's line: ``validation, acc: ..., loss: ...``.
        ``comm`` (an mpi4py communicator) shares the work among its processes, which all pass
        the same data and all get the figures over the whole of it; rank 0 alone prints. With
        ``shard=True`` each passes its own part, and the figures are over all the parts.
        """
        if not isinstance(verbose, bool):
            raise TypeError(f"verbose must be True or False; got {shown(verbose)}")
        if comm is not None:
            return distributed.evaluate(self, X, y, comm, batch_size, verbose=verbose, shard=shard)
        if shard is not False:
            raise ValueError(f"shard={shard!r} shares the data among processes: it needs comm")
        building.finalized(self, "evaluate")
        X, y = data.prepare(self, X, y)
        return training.evaluate(self, X, y, batch_size, verbose=verbose)

    def summary(self) -> str:
        """Print and return a table of the layers (output width, parameters), the total, the
        backend and the dtype, as Keras's ``summary()``.

        The text returned is a ``str`` that a notebook does not show again as the cell's value,
        so ``model.summary()`` on a cell's last line shows the table once.
        """
        text = summary.SummaryText(summary.table(self, self._auto_note))
        print(text)
        return text

    def predict(self, X: Any, *, batch_size: int | None = None) -> Any:
        """The model's outputs for ``X``, as an array of the model's backend."""
        building.finalized(self, "predict")
        X = data.prepare_inputs(self.backend, X, self.n_inputs)
        return training.predict(self, X, batch_size)

    # -- saving and loading -----------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> None:
        """Save everything that training depends on in one safetensors file, atomically: the
        architecture (JSON), the parameters, and the training state a checkpoint holds (the
        optimizer's step count, rate and state, the epoch count, the generators, an epoch that
        Ctrl-C stopped), so ``Model.load(path).train(...)`` goes on as if never stopped.

        No pickle: loading it runs no code. ``save_parameters`` keeps the weights alone.
        """
        io.save_model(self, path, checkpoint={"epoch": self.epochs_trained})

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], backend: str | Backend | None = None, dtype: Any = None
    ) -> Model:
        """A model from a file written by ``save`` or a ``train`` checkpoint, on ``backend``
        (NumPy by default; any backend loads any file), ready to go on training exactly where
        the saved one stood. Any unloadable file raises ``xpnn.XpnnFileError``.
        """
        return io.load_model(cls, path, backend, dtype)

    def save_parameters(self, path: str | os.PathLike[str]) -> None:
        """Save the parameters alone (the book's name), in the same safe format."""
        io.save_parameters(self, path)

    def load_parameters(self, path: str | os.PathLike[str]) -> None:
        """Load parameters saved by ``save_parameters`` (or ``save``) into this model; every
        count and shape is checked before anything changes."""
        io.load_parameters(self, path)

    # -- parameters -------------------------------------------------------------------------------

    def get_parameters(self) -> list[tuple[np.ndarray, ...]]:
        """Each trainable layer's parameters, ``(weights, biases)``, as NumPy copies."""
        network = building.finalized(self, "get_parameters")
        return [
            tuple(np.array(to_numpy(getattr(layer, p))) for _, p, _ in layer.parameter_names)
            for layer in network.trainable
        ]

    def set_parameters(self, parameters: list[tuple[Any, ...]]) -> None:
        """Replace the parameters with ``parameters``, shaped as ``get_parameters`` returns them.

        Every shape is checked before anything is written.
        """
        building.finalized(self, "set_parameters")
        moves = building.parameter_moves(self, parameters)
        for target, value in moves:
            target[...] = self.backend.asarray(value)


def _same(these: Any, those: Any) -> bool:
    """Whether two sequences hold the same objects, in order."""
    return len(these) == len(those) and all(a is b for a, b in zip(these, those))
