"""SGD: the optimizer, and its update in every version, side by side.

Read the versions together: the reference, NumPy's in place, the compiled loops (numba), the
CUDA bodies and torch's in-place calls run the same operations in the same order, so they
give the same numbers (bit for bit on the CPU; the tests check every version against the
reference).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from .._checks import FRACTION, Settings, real
from ..backends.jit import Kernel, flat, scalars
from ..backends.torch import scratch_pair as torch_scratch_pair
from .base import Optimizer, scratch_pair

__all__ = ["SGD"]


def reference_update(
    backend: Any,
    scratch: dict[Any, Any],
    param: Any,
    grad: Any,
    momentums: Any,
    *,
    learning_rate: float,
    momentum: float,
) -> None:
    """One SGD step in place; with momentum, ``momentums`` holds the previous update."""
    if momentums is None:
        param += -learning_rate * grad
    else:
        momentums[...] = momentum * momentums - learning_rate * grad
        param += momentums


def numpy_update(
    backend: Any,
    scratch: dict[Any, Any],
    p: np.ndarray,
    g: np.ndarray,
    u: np.ndarray | None,
    *,
    learning_rate: float,
    momentum: float,
) -> None:
    """The reference, operation for operation, in place through a scratch array."""
    t1, _ = scratch_pair(scratch, p)
    if u is None:
        np.multiply(g, -learning_rate, out=t1)
        p += t1
    else:
        u *= momentum
        np.multiply(g, learning_rate, out=t1)
        u -= t1
        p += u


def torch_update(
    backend: Any,
    scratch: dict[Any, Any],
    p: Any,
    g: Any,
    u: Any,
    *,
    learning_rate: float,
    momentum: float,
) -> None:
    """NumPy's version in torch's in-place calls, on any device torch runs on."""
    t1, _ = torch_scratch_pair(scratch, p)
    if u is None:
        backend.torch.mul(g, -learning_rate, out=t1)
        p += t1
    else:
        u *= momentum
        backend.torch.mul(g, learning_rate, out=t1)
        u -= t1
        p += u


def _numba_plain(p: Any, g: Any, s: Any) -> None:  # pragma: no cover - compiled by numba
    """The reference without momentum, one value at a time, in one pass; ``s`` the scalars."""
    neg_learning_rate = s[0]
    for i in range(p.size):
        p[i] += neg_learning_rate * g[i]


def _numba_momentum(p: Any, g: Any, u: Any, s: Any) -> None:  # pragma: no cover - compiled by numba
    """The reference with momentum, one value at a time, in one pass; ``s`` the scalars."""
    momentum, learning_rate = s[0], s[1]
    for i in range(p.size):
        u[i] = momentum * u[i] - learning_rate * g[i]
        p[i] += u[i]


#: The loops, compiled on first use.
NUMBA_KERNELS = {"plain": Kernel(_numba_plain), "momentum": Kernel(_numba_momentum)}


def numba_scalars(*, learning_rate: float, momentum: float | None) -> tuple[float, ...]:
    """The update's scalars as its loop reads them (``s``): the plain loop's where
    ``momentum`` is None, else the loop with momentum's; for this step and the compiled epoch
    alike."""
    return (-learning_rate,) if momentum is None else (momentum, learning_rate)


def numba_update(
    backend: Any,
    scratch: dict[Any, Any],
    p: np.ndarray,
    g: np.ndarray,
    u: np.ndarray | None,
    *,
    learning_rate: float,
    momentum: float,
) -> None:
    """The reference as one compiled pass over the arrays; NumPy's version where they do not
    lie in memory alike."""
    views = flat(p, g) if u is None else flat(p, g, u)
    if views is None:
        numpy_update(backend, scratch, p, g, u, learning_rate=learning_rate, momentum=momentum)
    elif u is None:
        s = numba_scalars(learning_rate=learning_rate, momentum=None)
        backend.elementwise(NUMBA_KERNELS["plain"], views, scalars(p.dtype, *s))
    else:
        s = numba_scalars(learning_rate=learning_rate, momentum=momentum)
        backend.elementwise(NUMBA_KERNELS["momentum"], views, scalars(p.dtype, *s))


#: The CUDA bodies of CuPy's fused updates: ``(inputs, outputs, body)``, ``T`` the arrays' float
#: type, every scalar worked out on the host.
CUPY_KERNELS = {
    "sgd": ("T grad, T neg_learning_rate", "T param", "param += neg_learning_rate * grad;"),
    "sgd_momentum": (
        "T grad, T momentum, T learning_rate",
        "T param, T momentums",
        "momentums = momentum * momentums - learning_rate * grad;\nparam += momentums;",
    ),
}


def cupy_update(
    backend: Any,
    scratch: dict[Any, Any],
    param: Any,
    grad: Any,
    momentums: Any,
    *,
    learning_rate: float,
    momentum: float,
) -> None:
    """The reference as one fused CUDA kernel."""
    if momentums is None:
        backend.kernel("sgd", CUPY_KERNELS)(grad, -learning_rate, param)
    else:
        backend.kernel("sgd_momentum", CUPY_KERNELS)(
            grad, momentum, learning_rate, param, momentums
        )


class SGD(Optimizer):
    """Stochastic gradient descent, with momentum when ``momentum`` > 0."""

    settings: ClassVar[Settings] = {**Optimizer.settings, "momentum": FRACTION}
    state_names = ("momentums",)  # kept only with momentum
    flushed_states = ("momentums",)
    versions: ClassVar[dict[str, Callable[..., None]]] = {
        "numpy": numpy_update,
        "numba": numba_update,
        "cupy": cupy_update,
        "torch": torch_update,
    }

    def __init__(self, learning_rate: float = 1.0, decay: float = 0.0, momentum: float = 0.0):
        super().__init__(learning_rate, decay)
        self.momentum = real(momentum, "momentum", **FRACTION)

    def kept_states(self) -> tuple[str, ...]:
        """The momentums, with momentum; nothing without."""
        return self.state_names if self.momentum else ()

    def update(self, layer: Any, prefix: str, param: Any, grad: Any) -> None:
        """One SGD step on ``param``."""
        momentums = self.state(layer, f"{prefix}_momentums", param) if self.momentum else None
        backend = layer.backend
        self.version(backend, reference_update)(
            backend,
            self.scratch,
            param,
            grad,
            momentums,
            learning_rate=self.current_learning_rate,
            momentum=self.momentum,
        )
        if momentums is not None:
            self.flush(layer, momentums)

    def numba_step(self) -> tuple[Callable[..., None], tuple[float, ...]]:
        """The coming step as one pass of ``_numba_momentum`` with momentum, else of
        ``_numba_plain`` (see ``Optimizer.numba_step``)."""
        momentum = self.momentum or None
        loop = _numba_plain if momentum is None else _numba_momentum
        return loop, numba_scalars(learning_rate=self.current_learning_rate, momentum=momentum)
