"""What every optimizer shares: the book's decay, the step count, its state and its scratch.

An update rule lives in a module of its own beside this one (``sgd.py``, ``adagrad.py``,
``rmsprop.py``, ``adam.py``, ``adamw.py``), all its versions side by side: the reference written
against the array API standard, NumPy's in place, the compiled one (numba) and CuPy's fused CUDA
kernel body. The optimizer picks one by the backend's ``fast_path`` (then its
``fallback_paths``); a rule without a version for any of them runs the reference.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from .._checks import NON_NEGATIVE, POSITIVE, HasSettings, Part, Settings, real, shown

__all__ = ["FLUSH_EVERY", "Optimizer"]

#: Steps between flushes of subnormal values from decaying optimizer states (momentums and
#: moving averages; see ``Backend.flush_subnormals``). A flush changes a state by less than
#: the smallest normal float, and every backend flushes alike.
FLUSH_EVERY = 100


class Optimizer(HasSettings, Part):
    """Learning rate with the book's decay, ``lr / (1 + decay * iterations)``, and the step count.

    The decayed rate and every other scalar are Python floats computed on the host, so a step
    never waits for the device. ``settings`` are those that enter the updates in the model's
    dtype (``decay`` stays on the host; the decayed rate is checked as it stands).
    """

    settings: ClassVar[Settings] = {"learning_rate": POSITIVE, "current_learning_rate": POSITIVE}
    #: The state arrays the optimizer keeps for each parameter, as ``<prefix>_<name>`` on the
    #: layer (the book's ``weight_momentums``, ``weight_cache``); saving and the non-finite
    #: snapshot read them from here.
    state_names: ClassVar[tuple[str, ...]] = ()
    #: Those of ``state_names`` that can never be negative (sums or averages of squared
    #: gradients): a file holding negative values there is refused.
    non_negative_states: ClassVar[tuple[str, ...]] = ()
    #: Those of ``state_names`` that decay (momentums, moving averages), whose subnormal values
    #: ``flush`` zeroes every ``FLUSH_EVERY`` steps; a sum that only grows is not flushed.
    flushed_states: ClassVar[tuple[str, ...]] = ()
    #: The update's versions by ``Backend.fast_path`` ("numpy", "numba", "cupy"); a backend with
    #: none of them runs the rule's reference. Each takes
    #: ``(backend, scratch, param, grad, *states, **scalars)``.
    versions: ClassVar[dict[str, Callable[..., None]]] = {}

    def __init__(self, learning_rate: float, decay: float) -> None:
        self.learning_rate = real(learning_rate, "learning_rate", **POSITIVE)
        self.decay = real(decay, "decay", **NON_NEGATIVE)
        self.current_learning_rate = self.learning_rate
        self.iterations = 0
        #: Temporary arrays an update may keep between steps (NumPy's in-place versions); the
        #: optimizer owns them, so models on the same backend never share them.
        self.scratch: dict[Any, Any] = {}

    def kept_states(self) -> tuple[str, ...]:
        """Those of ``state_names`` kept with these settings, each from the first step on: a
        checkpoint after a step holds them all."""
        return self.state_names

    def pre_update_params(self) -> None:
        """Decay the learning rate for the coming step."""
        if self.decay:
            self.current_learning_rate = self.learning_rate * (
                1.0 / (1.0 + self.decay * self.iterations)
            )

    def update_params(self, layer: Any) -> None:
        """Update every trainable array of ``layer`` in place from its gradient."""
        parameters = getattr(layer, "trainable_parameters", None)
        if parameters is None:
            raise TypeError(f"layer must be an xpnn layer (Dense, ...); got {shown(layer)}")
        for prefix, param, grad in parameters():
            self.update(layer, prefix, param, grad)

    def post_update_params(self) -> None:
        """Count the step."""
        self.iterations += 1

    def update(self, layer: Any, prefix: str, param: Any, grad: Any) -> None:
        """Update ``param`` from ``grad``; the state lives on ``layer`` under ``prefix``."""
        raise NotImplementedError

    def numba_step(self) -> tuple[Callable[..., None], tuple[float, ...]] | None:
        """The coming step as one pass of the rule's numba loop, for the compiled epoch
        (``xpnn.training.compiled``): the loop, which takes the flat parameters, gradients,
        the states of ``kept_states`` in that order and the scalars, and those scalars as its
        numba version passes them; None where the rule has no such loop. Called between
        ``pre_update_params`` and ``post_update_params``, as ``update`` is."""
        return None

    def version(self, backend: Any, reference: Callable[..., None]) -> Callable[..., None]:
        """The update to run on ``backend``: the version for its ``fast_path``, else for the
        first of its ``fallback_paths`` the rule has, else ``reference``."""
        for path in (backend.fast_path, *backend.fallback_paths):
            if path in self.versions:
                return self.versions[path]
        return reference

    def flush(self, layer: Any, *states: Any) -> None:
        """Zero the subnormal values of decaying ``states`` every ``FLUSH_EVERY`` steps."""
        if (self.iterations + 1) % FLUSH_EVERY == 0:
            layer.backend.flush_subnormals(*states)

    @staticmethod
    def state(layer: Any, name: str, like: Any) -> Any:
        """The optimizer state ``layer.<name>`` (the book keeps it on the layer), zeros at first."""
        value = getattr(layer, name, None)
        if value is None or value.shape != like.shape:
            value = layer.backend.zeros(like.shape)
            setattr(layer, name, value)
        return value


def scratch_pair(scratch: dict[Any, Any], like: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two NumPy arrays shaped as ``like`` to compute in, kept in ``scratch`` for the next step."""
    key = (like.shape, like.dtype.str)
    pair = scratch.get(key)
    if pair is None:
        pair = scratch[key] = (np.empty_like(like), np.empty_like(like))
    return pair
