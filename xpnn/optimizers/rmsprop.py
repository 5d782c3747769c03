"""RMSprop: the optimizer, and its update in every version, side by side.

Read the versions together: the reference, NumPy's in place, the compiled loop (numba), the
CUDA body and torch's in-place calls run the same operations in the same order, so they
give the same numbers (bit for bit on the CPU; the tests check every version against the
reference).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from .._checks import FRACTION, POSITIVE, Settings, real
from ..backends.jit import Kernel, flat, scalars
from ..backends.torch import scratch_pair as torch_scratch_pair
from .base import Optimizer, scratch_pair

__all__ = ["RMSprop"]


def reference_update(
    backend: Any,
    scratch: dict[Any, Any],
    param: Any,
    grad: Any,
    cache: Any,
    *,
    learning_rate: float,
    epsilon: float,
    rho: float,
) -> None:
    """One RMSprop step in place: the cache is a moving average of squared gradients."""
    cache[...] = rho * cache + (1 - rho) * grad**2
    param += -learning_rate * grad / (backend.xp.sqrt(cache) + epsilon)


def numpy_update(
    backend: Any,
    scratch: dict[Any, Any],
    p: np.ndarray,
    g: np.ndarray,
    c: np.ndarray,
    *,
    learning_rate: float,
    epsilon: float,
    rho: float,
) -> None:
    """The reference, operation for operation, in place through two scratch arrays."""
    t1, t2 = scratch_pair(scratch, p)
    c *= rho
    np.multiply(g, g, out=t1)
    t1 *= 1 - rho
    c += t1
    np.sqrt(c, out=t1)
    t1 += epsilon
    np.multiply(g, -learning_rate, out=t2)
    t2 /= t1
    p += t2


def torch_update(
    backend: Any,
    scratch: dict[Any, Any],
    p: Any,
    g: Any,
    c: Any,
    *,
    learning_rate: float,
    epsilon: float,
    rho: float,
) -> None:
    """NumPy's version in torch's in-place calls, on any device torch runs on."""
    torch = backend.torch
    t1, t2 = torch_scratch_pair(scratch, p)
    c *= rho
    torch.mul(g, g, out=t1)
    t1 *= 1 - rho
    c += t1
    torch.sqrt(c, out=t1)
    t1 += epsilon
    torch.mul(g, -learning_rate, out=t2)
    t2 /= t1
    p += t2


def _numba_loop(p: Any, g: Any, c: Any, s: Any) -> None:  # pragma: no cover - numba
    """The reference for one value at a time, in one pass; ``s`` holds the scalars."""
    rho, one_minus_rho, epsilon, neg_learning_rate = s[0], s[1], s[2], s[3]
    for i in range(p.size):
        c[i] = rho * c[i] + one_minus_rho * (g[i] * g[i])
        p[i] += neg_learning_rate * g[i] / (np.sqrt(c[i]) + epsilon)


#: The loop, compiled on first use.
NUMBA_KERNEL = Kernel(_numba_loop)


def numba_scalars(*, learning_rate: float, epsilon: float, rho: float) -> tuple[float, ...]:
    """The update's scalars as the loop reads them (``s``), for this step and the compiled
    epoch alike."""
    return (rho, 1 - rho, epsilon, -learning_rate)


def numba_update(
    backend: Any,
    scratch: dict[Any, Any],
    p: np.ndarray,
    g: np.ndarray,
    c: np.ndarray,
    *,
    learning_rate: float,
    epsilon: float,
    rho: float,
) -> None:
    """The reference as one compiled pass over the arrays; NumPy's version where they do not
    lie in memory alike."""
    views = flat(p, g, c)
    if views is None:
        numpy_update(
            backend, scratch, p, g, c, learning_rate=learning_rate, epsilon=epsilon, rho=rho
        )
        return
    s = numba_scalars(learning_rate=learning_rate, epsilon=epsilon, rho=rho)
    backend.elementwise(NUMBA_KERNEL, views, scalars(p.dtype, *s))


#: The CUDA body of CuPy's fused update: ``(inputs, outputs, body)``, ``T`` the arrays' float
#: type, every scalar worked out on the host.
CUPY_KERNELS = {
    "rmsprop": (
        "T grad, T rho, T one_minus_rho, T epsilon, T neg_learning_rate",
        "T param, T cache",
        "cache = rho * cache + one_minus_rho * (grad * grad);\n"
        "param += neg_learning_rate * grad / (sqrt(cache) + epsilon);",
    ),
}


def cupy_update(
    backend: Any,
    scratch: dict[Any, Any],
    param: Any,
    grad: Any,
    cache: Any,
    *,
    learning_rate: float,
    epsilon: float,
    rho: float,
) -> None:
    """The reference as one fused CUDA kernel."""
    backend.kernel("rmsprop", CUPY_KERNELS)(
        grad, rho, 1 - rho, epsilon, -learning_rate, param, cache
    )


class RMSprop(Optimizer):
    """Per-parameter learning rates scaled by a moving average of squared gradients."""

    settings: ClassVar[Settings] = {**Optimizer.settings, "epsilon": POSITIVE, "rho": FRACTION}
    state_names = ("cache",)
    non_negative_states = ("cache",)
    flushed_states = ("cache",)
    versions: ClassVar[dict[str, Callable[..., None]]] = {
        "numpy": numpy_update,
        "numba": numba_update,
        "cupy": cupy_update,
        "torch": torch_update,
    }

    def __init__(
        self,
        learning_rate: float = 0.001,
        decay: float = 0.0,
        epsilon: float = 1e-7,
        rho: float = 0.9,
    ) -> None:
        super().__init__(learning_rate, decay)
        self.epsilon = real(epsilon, "epsilon", **POSITIVE)
        self.rho = real(rho, "rho", **FRACTION)

    def update(self, layer: Any, prefix: str, param: Any, grad: Any) -> None:
        """One RMSprop step on ``param``."""
        cache = self.state(layer, f"{prefix}_cache", param)
        backend = layer.backend
        self.version(backend, reference_update)(
            backend,
            self.scratch,
            param,
            grad,
            cache,
            learning_rate=self.current_learning_rate,
            epsilon=self.epsilon,
            rho=self.rho,
        )
        self.flush(layer, cache)

    def numba_step(self) -> tuple[Callable[..., None], tuple[float, ...]]:
        """The coming step as one pass of ``_numba_loop`` (see ``Optimizer.numba_step``)."""
        return _numba_loop, numba_scalars(
            learning_rate=self.current_learning_rate, epsilon=self.epsilon, rho=self.rho
        )
