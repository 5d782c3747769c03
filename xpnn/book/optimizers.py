"""The book's optimizers, on xpnn's (their update kernels, compiled on the numpy backend):
``Optimizer_SGD``, ``Optimizer_Adagrad``, ``Optimizer_RMSprop``, ``Optimizer_Adam``, and the
batch-training notebook's ``Optimiser_Adam``.

The signatures, defaults and attributes are the book's (``learning_rate``,
``current_learning_rate``, ``decay``, ``iterations``, ...); the state lives on each layer as the
book keeps it (``layer.weight_momentums``, ``layer.weight_cache``, ...).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from .. import optimizers
from ..backends import Backend, get_backend
from ..backends.jit import PARALLEL_FROM, scalars
from ..optimizers import adam

__all__ = [
    "Optimiser_Adam",
    "Optimizer_Adagrad",
    "Optimizer_Adam",
    "Optimizer_RMSprop",
    "Optimizer_SGD",
]


class _Book:
    """Updates the xpnn layer inside a book layer."""

    def update_params(self, layer: Any) -> None:
        """Update the layer's weights and biases in place from its gradients: a book layer's
        in one pass over its flat buffer; a layer of the script's own (NumPy arrays named as
        the book names them) array by array, its state kept on it under the book's names."""
        buffer = getattr(layer, "_buffer", None)
        if buffer is not None:
            layer._before_update()
        if buffer is not None and layer._wide_states is None and layer._wide_dbiases is None:
            if not self._lean_update(buffer):
                self.update(buffer, "param", buffer.params, buffer.dparams)  # type: ignore[attr-defined]
            return
        if buffer is not None:  # float64 bias gradients: the weights and biases apart
            self._update_wide(layer, buffer)
            return
        holder = _Plain(layer)
        for prefix, param, grad in (
            ("weight", "weights", "dweights"),
            ("bias", "biases", "dbiases"),
        ):
            self.update(holder, prefix, getattr(layer, param), getattr(layer, grad))  # type: ignore[attr-defined]

    def _lean_update(self, buffer: Any) -> bool:
        """The update of a book layer's flat buffer by a shorter way than ``update``, where the
        rule has one (False: take ``update``)."""
        return False

    def _update_wide(self, layer: Any, buffer: Any) -> None:
        """The weights from their part of the flat buffer (the compiled update), the biases
        from the float64 gradient with float64 states (the reference update, the book's
        formulas in NumPy's arithmetic)."""
        for name in self.state_names:  # type: ignore[attr-defined]
            self.state(buffer, f"param_{name}", buffer.params)  # type: ignore[attr-defined]
        n_weights = layer._sizes[0]
        head = _Head(buffer, n_weights)
        self.update(head, "param", buffer.params[:n_weights], buffer.dparams[:n_weights])  # type: ignore[attr-defined]
        backend = layer._backend
        xp = backend.xp
        if layer._wide_states is None:
            layer._wide_states = {
                f"bias_{name}": xp.reshape(
                    xp.astype(getattr(buffer, f"param_{name}")[n_weights:], xp.float64), (1, -1)
                )
                for name in self.state_names  # type: ignore[attr-defined]
            }
        gradient = layer._wide_dbiases
        if gradient is None:
            gradient = layer._layer.dbiases
        biases = xp.reshape(buffer.params[n_weights:], (1, -1))
        holder = _Wide(layer._wide_states, _reference_backend(backend))
        # float32 biases plus a float64 step, rounded back: NumPy's in-place arithmetic.
        wide = xp.astype(biases, xp.float64)
        self.update(holder, "bias", wide, gradient)  # type: ignore[attr-defined]
        biases[...] = xp.astype(wide, biases.dtype)


class _Head:
    """The first ``n`` values of a flat buffer and of its optimizer states."""

    def __init__(self, buffer: Any, n: int) -> None:
        self.buffer, self.n, self.backend = buffer, n, buffer.backend

    def __getattr__(self, name: str) -> Any:
        return getattr(self.buffer, name)[: self.n]


_references: dict[str, Backend] = {}


def _reference_backend(backend: Backend) -> Backend:
    """A float64 backend of ``backend``'s library that runs every update's reference (the
    book's formulas in the library's arithmetic)."""
    name = backend.name
    if name not in _references:
        if backend.on_host:
            reference = Backend(np, "cpu", "float64", pass_device=False)
        else:
            reference = copy.copy(get_backend(name, "float64"))
            reference.fast_path, reference.fallback_paths = None, ()
        _references[name] = reference
    return _references[name]


class _Wide:
    """Float64 bias states, updated by the reference (the book's formulas)."""

    def __init__(self, states: dict, backend: Backend) -> None:
        object.__setattr__(self, "states", states)
        object.__setattr__(self, "backend", backend)

    def __getattr__(self, name: str) -> Any:
        return self.states.get(name)

    def __setattr__(self, name: str, value: Any) -> None:
        self.states[name] = value


class _Plain:
    """A layer of a script's own seen as xpnn's optimizers see a layer: its NumPy backend, and
    its state read and written on it."""

    def __init__(self, layer: Any) -> None:
        weights = np.asarray(layer.weights)
        dtype = weights.dtype.name if weights.dtype.name in ("float32", "float64") else "float32"
        object.__setattr__(self, "layer", layer)
        object.__setattr__(self, "backend", get_backend("numpy", dtype))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.layer, name, None)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.layer, name, value)


class Optimizer_SGD(_Book, optimizers.SGD):
    """Stochastic gradient descent with the book's decay and optional momentum."""


class Optimizer_Adagrad(_Book, optimizers.Adagrad):
    """Adagrad: each parameter's step scaled by its summed squared gradients."""


class Optimizer_RMSprop(_Book, optimizers.RMSprop):
    """RMSprop: each parameter's step scaled by a moving average of squared gradients."""


class Optimizer_Adam(_Book, optimizers.Adam):
    """Adam: momentum and RMSprop's cache, both bias-corrected."""

    #: The compiled update's scalars for the step they were made for (see ``_lean_update``).
    _lean_scalars: tuple = (None, None)

    def _lean_update(self, buffer: Any) -> bool:
        """``Adam.update``'s compiled version called straight on the buffer, with the step's
        scalars made once for all the layers: the same update, without its Python layers.
        Adam's first step (which makes the states) and other backends take ``update``."""
        backend = buffer.backend
        states = vars(buffer)
        momentums, cache = states.get("param_momentums"), states.get("param_cache")
        if backend.fast_path != "numba" or momentums is None or cache is None:
            return False
        if type(self).update is not optimizers.Adam.update:
            return False  # a subclass's own update
        params, dparams = buffer.params, buffer.dparams
        key = (self.iterations, self.current_learning_rate, params.dtype)
        made, s = self._lean_scalars
        if made != key:
            step = self.iterations + 1
            settings = (self.beta_1, 1 - self.beta_1, self.beta_2, 1 - self.beta_2, self.epsilon)
            corrections = (1 - self.beta_1**step, 1 - self.beta_2**step)
            s = scalars(params.dtype, *settings, *corrections, -self.current_learning_rate)
            self._lean_scalars = (key, s)
        if params.size < PARALLEL_FROM:  # one pass (the book's layers): the loop itself
            adam.NUMBA_KERNEL.dispatcher()(params, dparams, momentums, cache, s)
        else:
            backend.elementwise(adam.NUMBA_KERNEL, (params, dparams, momentums, cache), s)
        self.flush(buffer, momentums, cache)
        return True


class Optimiser_Adam(Optimizer_Adam):
    """The batch-training notebook's Adam, with its defaults (``learning_rate=0.02``,
    ``decay=5e-5``)."""

    def __init__(
        self,
        learning_rate: float = 0.02,
        decay: float = 5e-5,
        epsilon: float = 1e-7,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
    ) -> None:
        super().__init__(learning_rate, decay, epsilon, beta_1, beta_2)
