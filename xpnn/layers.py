"""Layers with parameters: each holds its weights and computes forward and backward passes."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._checks import positive_int
from .backend import Backend, get_backend

__all__ = ["Dense", "Layer"]


class Layer:
    """Base of every layer and activation: the backend it computes on.

    ``parameter_names`` lists each trainable array as (optimizer state prefix, parameter
    attribute, gradient attribute), the book's names, so an optimizer can update any layer.
    """

    parameter_names: tuple[tuple[str, str, str], ...] = ()

    def __init__(self, *, backend: str | Backend = "numpy", dtype: Any = None) -> None:
        self.backend = get_backend(backend, dtype)

    def build(self, backend: Backend, rng: np.random.Generator) -> None:
        """Move onto ``backend``; a layer with parameters draws fresh ones from ``rng``."""
        self.backend = backend

    def predictions(self, outputs: Any) -> Any:
        """What the outputs predict; the outputs themselves unless the layer says otherwise."""
        return outputs

    def trainable_parameters(self) -> list[tuple[str, Any, Any]]:
        """(state prefix, parameter, gradient) for each trainable array."""
        return [
            (prefix, getattr(self, p), getattr(self, g)) for prefix, p, g in self.parameter_names
        ]

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Dense(Layer):
    """A fully connected layer: ``output = inputs @ weights + biases``.

    Weights start as ``0.01 * N(0, 1)`` drawn on the host (so every backend starts alike from
    the same seed), biases at zero. Inside a model the weights come from the model's seed.
    """

    parameter_names = (("weight", "weights", "dweights"), ("bias", "biases", "dbiases"))

    def __init__(
        self,
        n_inputs: int,
        n_neurons: int,
        *,
        backend: str | Backend = "numpy",
        dtype: Any = None,
        seed: int | None = None,
    ) -> None:
        self.n_inputs = positive_int(n_inputs, "n_inputs")
        self.n_neurons = positive_int(n_neurons, "n_neurons")
        super().__init__(backend=backend, dtype=dtype)
        self.build(self.backend, np.random.default_rng(seed))

    def build(self, backend: Backend, rng: np.random.Generator) -> None:
        self.backend = backend
        shape = (self.n_inputs, self.n_neurons)
        self.weights = backend.asarray(0.01 * rng.standard_normal(shape))
        self.biases = backend.zeros((1, self.n_neurons))
        # Gradients are written into these buffers, which a model makes views of its own.
        self.dweights = backend.zeros(shape)
        self.dbiases = backend.zeros((1, self.n_neurons))

    def forward(self, inputs: Any, training: bool = False) -> Any:
        self.inputs = self.backend.ensure(inputs)
        self.output = self.inputs @ self.weights + self.biases
        return self.output

    def backward(self, dvalues: Any) -> Any:
        dvalues = self.backend.ensure(dvalues, "dvalues")
        self.backend.matmul(self.inputs.T, dvalues, out=self.dweights)
        self.backend.sum_rows(dvalues, out=self.dbiases)
        self.dinputs = dvalues @ self.weights.T
        return self.dinputs

    def __repr__(self) -> str:
        return f"Dense({self.n_inputs}, {self.n_neurons})"
