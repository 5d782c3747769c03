"""Layers with parameters: each holds its weights and computes forward and backward passes."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from . import masks
from ._checks import (
    FRACTION,
    NON_NEGATIVE,
    POSITIVE,
    HasSettings,
    Part,
    Settings,
    ensure_numbers,
    positive_int,
    real,
    same_shape,
    seed_value,
)
from .backends import Backend, get_backend

__all__ = ["Dense", "Dropout", "Layer"]


def layer_seed(seed: int | None) -> int:
    """The seed a layer made outside a model draws from: ``seed`` itself, or for None one
    drawn from NumPy's global generator, as scikit-learn's ``random_state=None`` does, so
    ``np.random.seed(0)`` (or the book's ``nnfs.init()``) makes a run repeatable."""
    if seed_value(seed) is not None:
        return int(seed)
    return int(np.random.randint(np.iinfo(np.int32).max))  # noqa: NPY002 (the global one)


class Layer(HasSettings, Part):
    """Base of every layer and activation: the backend it computes on.

    ``parameter_names`` lists each trainable array as (optimizer state prefix, parameter
    attribute, gradient attribute), the book's names, so an optimizer can update any layer.
    ``output_range`` is the closed interval its outputs lie in (or approach), which a model
    checks its targets against.
    """

    parameter_names: tuple[tuple[str, str, str], ...] = ()
    output_range: tuple[float, float] = (-math.inf, math.inf)
    #: True for a layer that draws random numbers of its own (Dropout's masks), keyed by what
    #: ``random_state()`` returns: saving keeps that, so a resumed run draws what it would have.
    draws_random: ClassVar[bool] = False

    def __init__(self, *, backend: str | Backend = "numpy", dtype: Any = None) -> None:
        self.backend = get_backend(backend, dtype)

    @classmethod
    def parameter_shapes(cls, **settings: Any) -> dict[str, tuple[int, ...]]:
        """The shape of each parameter (by attribute) that a layer built with ``settings``
        holds, known before it is built: what a saved file must hold for it."""
        return {}

    @classmethod
    def widths(cls, **settings: Any) -> tuple[int | None, int | None]:
        """How many inputs a layer built with ``settings`` takes and outputs it gives; None
        where it takes or gives as many as it is given (an activation, Dropout)."""
        return None, None

    def build(self, backend: Backend, rng: np.random.Generator) -> None:
        """Move onto ``backend``; a layer with parameters draws fresh ones from ``rng``."""
        self.backend = backend

    def _inputs(self, inputs: Any) -> Any:
        """``forward``'s inputs on the device in the float dtype (host data moves, another
        dtype is cast); TypeError naming ``inputs`` for another device's array or non-numbers."""
        return ensure_numbers(self.backend, inputs, "inputs")

    def _gradient(self, dvalues: Any) -> Any:
        """``backward``'s ``dvalues`` taken as ``forward`` takes inputs, and shaped as the output
        they are the gradient of: an error naming ``dvalues`` otherwise, before anything changes
        (NumPy would broadcast a row or a scalar into a wrong gradient without a word)."""
        output = getattr(self, "output", None)
        if output is None:
            raise RuntimeError(
                f"{self!r}.backward() before forward(): dvalues is the gradient of the output "
                "of the last forward pass, and there has been none"
            )
        dvalues = ensure_numbers(self.backend, dvalues, "dvalues")
        if dvalues.shape != output.shape:  # tuples on every library; compared inline, per step
            same_shape(dvalues, output.shape, "dvalues", f"the output of {self!r}")
        return dvalues

    def predictions(self, outputs: Any) -> Any:
        """What the outputs predict; the outputs themselves unless the layer says otherwise."""
        return outputs

    def trainable_parameters(self) -> list[tuple[str, Any, Any]]:
        """(state prefix, parameter, gradient) for each trainable array."""
        return [
            (prefix, getattr(self, p), getattr(self, g)) for prefix, p, g in self.parameter_names
        ]


class Dense(Layer):
    """A fully connected layer: ``output = inputs @ weights + biases``.

    Weights start as ``weight_scale * N(0, 1)`` (0.01, the book's choice) drawn on the host, so
    every backend starts alike from the same seed; biases at zero. Inside a model the weights
    come from the model's seed. (The book's regression chapter needs 0.1 to learn at all.)
    On its own the layer draws from ``seed``; ``seed=None`` takes one from NumPy's global
    generator (see :func:`layer_seed`), so ``np.random.seed`` or ``nnfs.init()`` repeats a run.
    The regularizers add ``l1 * sum(|w|) + l2 * sum(w ** 2)`` to the loss, for weights and
    biases separately.
    """

    parameter_names = (("weight", "weights", "dweights"), ("bias", "biases", "dbiases"))
    settings: ClassVar[Settings] = {
        "weight_scale": POSITIVE,
        **{
            f"{kind}_regularizer_{norm}": NON_NEGATIVE
            for kind in ("weight", "bias")
            for norm in ("l1", "l2")
        },
    }

    def __init__(
        self,
        n_inputs: int,
        n_neurons: int,
        weight_regularizer_l1: float = 0.0,
        weight_regularizer_l2: float = 0.0,
        bias_regularizer_l1: float = 0.0,
        bias_regularizer_l2: float = 0.0,
        *,
        weight_scale: float = 0.01,
        backend: str | Backend = "numpy",
        dtype: Any = None,
        seed: int | None = None,
    ) -> None:
        self.n_inputs = positive_int(n_inputs, "n_inputs")
        self.weight_scale = real(weight_scale, "weight_scale", **POSITIVE)
        self.n_neurons = positive_int(n_neurons, "n_neurons")
        self.weight_regularizer_l1 = real(
            weight_regularizer_l1, "weight_regularizer_l1", **NON_NEGATIVE
        )
        self.weight_regularizer_l2 = real(
            weight_regularizer_l2, "weight_regularizer_l2", **NON_NEGATIVE
        )
        self.bias_regularizer_l1 = real(bias_regularizer_l1, "bias_regularizer_l1", **NON_NEGATIVE)
        self.bias_regularizer_l2 = real(bias_regularizer_l2, "bias_regularizer_l2", **NON_NEGATIVE)
        super().__init__(backend=backend, dtype=dtype)
        self.build(self.backend, np.random.default_rng(layer_seed(seed)))

    @classmethod
    def parameter_shapes(cls, **settings: Any) -> dict[str, tuple[int, ...]]:
        """``weights`` (n_inputs, n_neurons) and ``biases`` (1, n_neurons)."""
        n_inputs = positive_int(settings["n_inputs"], "n_inputs")
        n_neurons = positive_int(settings["n_neurons"], "n_neurons")
        return {"weights": (n_inputs, n_neurons), "biases": (1, n_neurons)}

    @classmethod
    def widths(cls, **settings: Any) -> tuple[int | None, int | None]:
        """``n_inputs`` in, ``n_neurons`` out."""
        return settings["n_inputs"], settings["n_neurons"]

    def build(self, backend: Backend, rng: np.random.Generator) -> None:
        """Move onto ``backend`` with fresh weights from ``rng`` and zero biases.

        ValueError, before anything changes, if a weight drawn is beyond the dtype's range.
        """
        shape = self.parameter_shapes(**self.config())["weights"]
        with np.errstate(over="ignore"):
            weights = (self.weight_scale * rng.standard_normal(shape)).astype(backend.dtype_name)
        if not np.all(np.isfinite(weights)):
            raise ValueError(
                f"weight_scale={self.weight_scale!r} of {self!r} draws initial weights beyond "
                f"{backend.dtype_name}'s range (up to {np.finfo(weights.dtype).max:.3g}): choose "
                "a smaller weight_scale"
            )
        self.backend = backend
        self.weights = backend.asarray(weights)
        self.biases = backend.zeros((1, self.n_neurons))
        # Gradients are written into these buffers, which a model makes views of its own.
        self.dweights = backend.zeros(shape)
        self.dbiases = backend.zeros((1, self.n_neurons))

    def forward(self, inputs: Any, training: bool = False) -> Any:
        """``inputs @ weights + biases`` into ``self.output``."""
        inputs = self._inputs(inputs)
        if inputs.ndim != 2 or inputs.shape[1] != self.n_inputs:
            raise ValueError(
                f"inputs must have shape (samples, {self.n_inputs}) for {self!r}; got "
                f"{tuple(inputs.shape)}"
            )
        self.inputs = inputs
        self.output = self.backend.affine(self.inputs, self.weights, self.biases)
        return self.output

    def backward(self, dvalues: Any, *, need_dinputs: bool = True) -> Any:
        """Gradients of the weights and biases (penalties included) and, unless the caller has
        no use for it (a model's first layer), of the inputs."""
        dvalues = self._gradient(dvalues)
        self.backend.matmul(self.inputs.T, dvalues, out=self.dweights)
        self.backend.sum_rows(dvalues, out=self.dbiases)
        self.add_penalty_gradients()
        self.dinputs = None
        if need_dinputs:
            self.dinputs = self.backend.matmul(dvalues, self.weights.T)
        return self.dinputs

    def add_penalty_gradients(self) -> None:
        """Add the regularizers' gradients to ``dweights`` and ``dbiases`` (those set)."""
        if self.weight_regularizer_l1 or self.weight_regularizer_l2:
            self._add_penalty_gradient(self.dweights, self.weights, "weight")
        if self.bias_regularizer_l1 or self.bias_regularizer_l2:
            self._add_penalty_gradient(self.dbiases, self.biases, "bias")

    def _add_penalty_gradient(self, gradient: Any, values: Any, kind: str) -> None:
        l1 = getattr(self, f"{kind}_regularizer_l1")
        l2 = getattr(self, f"{kind}_regularizer_l2")
        if l1:  # d|w|/dw as the book takes it: 1, or -1 where w < 0
            gradient += l1 * (1.0 - 2.0 * self.backend.xp.astype(values < 0, self.backend.dtype))
        if l2:
            gradient += 2 * l2 * values

    @property
    def regularized(self) -> bool:
        """True if any regularizer is set."""
        return any(
            getattr(self, f"{kind}_regularizer_{norm}")
            for kind in ("weight", "bias")
            for norm in ("l1", "l2")
        )

    def regularization_loss(self) -> Any:
        """The regularizers' penalty for the current parameters, a 0-d array on the device."""
        xp = self.backend.xp
        total = self.backend.zeros(())
        for kind, values in (("weight", self.weights), ("bias", self.biases)):
            l1 = getattr(self, f"{kind}_regularizer_l1")
            l2 = getattr(self, f"{kind}_regularizer_l2")
            if l1:
                total = total + l1 * xp.sum(xp.abs(values))
            if l2:
                total = total + l2 * xp.sum(values * values)
        return total


class Dropout(Layer):
    """Zeroes a fraction ``rate`` of its inputs while training and scales the rest by
    ``1 / (1 - rate)``, so the expected output is unchanged; at inference it passes inputs on.

    The mask is drawn where the arrays live. Mask number ``draws`` is a function of (``seed``,
    ``stream``, ``draws``) alone (``xpnn.masks``): the seed comes from the model (or ``seed``;
    ``seed=None`` takes one from NumPy's global generator, see :func:`layer_seed`), the stream
    is the rank in data-parallel training, and there is no generator state to keep.
    Used on its own, ``forward`` drops by default, as in the book's chapter; a model says
    ``training=False`` at inference.
    """

    draws_random = True

    def __init__(
        self,
        rate: float,
        *,
        backend: str | Backend = "numpy",
        dtype: Any = None,
        seed: int | None = None,
    ) -> None:
        self.rate = real(rate, "rate", **FRACTION)
        super().__init__(backend=backend, dtype=dtype)
        self.seed = np.random.SeedSequence(layer_seed(seed)).entropy
        self.stream, self.draws = 0, 0
        self.binary_mask = None

    def build(self, backend: Backend, rng: np.random.Generator) -> None:
        """Move onto ``backend`` with masks keyed by a seed drawn from ``rng``, from the first."""
        self.backend = backend
        self.seed, self.draws = int(rng.integers(2**63)), 0

    def random_state(self) -> dict[str, int]:
        """What the next masks depend on beside the stream: the seed and the masks drawn."""
        return {"seed": self.seed, "draws": self.draws}

    def set_random_state(self, state: dict[str, Any]) -> None:
        """Go on from ``random_state()``'s dict. A file written before masks were keyed holds
        a generator instead (``{"state": <NumPy PCG64 state>}``, or ``{"seed": s}`` from CuPy):
        the masks then start afresh from a seed it gives (the PCG64's next 63-bit integer, or
        ``s``), the same at every load of that file."""
        if "state" in state:
            host = np.random.Generator(np.random.PCG64())
            host.bit_generator.state = state["state"]
            self.seed, self.draws = int(host.integers(2**63)), 0
            return
        self.seed, self.draws = state["seed"], state.get("draws", 0)

    def forward(self, inputs: Any, training: bool = True) -> Any:
        """Drop and scale while ``training``; pass the inputs on otherwise."""
        self.inputs = self._inputs(inputs)
        if not training:
            self.binary_mask = None
            self.output = self.inputs
            return self.output
        self.binary_mask = self.draw_mask(tuple(self.inputs.shape))
        self.output = self.inputs * self.binary_mask
        return self.output

    def draw_mask(self, shape: tuple[int, ...]) -> Any:
        """The next mask of ``shape``, counted as drawn: 1 / (1 - rate) where a unit is kept,
        0 where it is dropped (the compiled epoch draws each step's through it too)."""
        keep = 1.0 - self.rate
        source = getattr(self, "_source", None)  # the host stream of (seed, stream), kept
        values, source = masks.uniform(
            self.backend, self.seed, self.stream, self.draws, shape, source
        )
        if source is not None:
            self._source = source
        self.draws += 1
        kept = values < keep
        return self.backend.xp.astype(kept, self.backend.dtype) / keep

    def backward(self, dvalues: Any) -> Any:
        """The gradient through the same mask as the forward pass."""
        dvalues = self._gradient(dvalues)
        self.dinputs = dvalues if self.binary_mask is None else dvalues * self.binary_mask
        return self.dinputs
