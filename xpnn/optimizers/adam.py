"""Adam: the optimizer, and its update in every version, side by side.

Read the versions together: the reference, NumPy's in place, the compiled loop (numba), the
CUDA body and torch's in-place calls run the same operations in the same order, so they
give the same numbers (bit for bit on the CPU; the tests check every version against the
reference). The compiled loop leaves out a division by a bias correction that rounds to 1,
late in training: it would give each value back unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from .._checks import FRACTION, POSITIVE, Settings, real
from ..backends.jit import Kernel, flat, scalars
from ..backends.torch import scratch_pair as torch_scratch_pair
from .base import Optimizer, scratch_pair

__all__ = ["Adam"]


def reference_update(
    backend: Any,
    scratch: dict[Any, Any],
    param: Any,
    grad: Any,
    momentum: Any,
    cache: Any,
    *,
    learning_rate: float,
    beta_1: float,
    beta_2: float,
    epsilon: float,
    correction_1: float,
    correction_2: float,
) -> None:
    """One Adam step in place, the book's formulas; corrections are ``1 - beta ** t``."""
    momentum[...] = beta_1 * momentum + (1 - beta_1) * grad
    cache[...] = beta_2 * cache + (1 - beta_2) * grad**2
    corrected_momentum = momentum / correction_1
    corrected_cache = cache / correction_2
    param += -learning_rate * corrected_momentum / (backend.xp.sqrt(corrected_cache) + epsilon)


def numpy_update(
    backend: Any,
    scratch: dict[Any, Any],
    p: np.ndarray,
    g: np.ndarray,
    m: np.ndarray,
    c: np.ndarray,
    *,
    learning_rate: float,
    beta_1: float,
    beta_2: float,
    epsilon: float,
    correction_1: float,
    correction_2: float,
) -> None:
    """The reference, operation for operation, in place through two scratch arrays."""
    t1, t2 = scratch_pair(scratch, p)
    m *= beta_1
    np.multiply(g, 1 - beta_1, out=t1)
    m += t1
    c *= beta_2
    np.multiply(g, g, out=t1)
    t1 *= 1 - beta_2
    c += t1
    np.divide(c, correction_2, out=t1)
    np.sqrt(t1, out=t1)
    t1 += epsilon
    np.divide(m, correction_1, out=t2)
    t2 *= -learning_rate
    t2 /= t1
    p += t2


def torch_update(
    backend: Any,
    scratch: dict[Any, Any],
    p: Any,
    g: Any,
    m: Any,
    c: Any,
    *,
    learning_rate: float,
    beta_1: float,
    beta_2: float,
    epsilon: float,
    correction_1: float,
    correction_2: float,
) -> None:
    """NumPy's version in torch's in-place calls, on any device torch runs on."""
    torch = backend.torch
    t1, t2 = torch_scratch_pair(scratch, p)
    m *= beta_1
    torch.mul(g, 1 - beta_1, out=t1)
    m += t1
    c *= beta_2
    torch.mul(g, g, out=t1)
    t1 *= 1 - beta_2
    c += t1
    torch.div(c, correction_2, out=t1)
    torch.sqrt(t1, out=t1)
    t1 += epsilon
    torch.div(m, correction_1, out=t2)
    t2 *= -learning_rate
    t2 /= t1
    p += t2


def _numba_loop(p: Any, g: Any, m: Any, c: Any, s: Any) -> None:  # pragma: no cover - numba
    """The reference for one value at a time, in one pass; ``s`` holds the scalars.

    A bias correction that rounds to 1 in the arrays' type gives each value back when divided
    into it, so that division is left out: the same numbers, a division fewer per value. With
    the default betas, ``1 - beta_1 ** t`` rounds to 1 from step 165 in float32 (356 in
    float64) and ``1 - beta_2 ** t`` from step 17,321 (37,412); W2's update then takes 5 to
    17%, and 8 to 27%, less time (docs/performance.md)."""
    beta_1, one_minus_beta_1, beta_2, one_minus_beta_2 = s[0], s[1], s[2], s[3]
    epsilon, correction_1, correction_2, neg_learning_rate = s[4], s[5], s[6], s[7]
    unit_1, unit_2 = correction_1 == 1, correction_2 == 1
    for i in range(p.size):
        m[i] = beta_1 * m[i] + one_minus_beta_1 * g[i]
        c[i] = beta_2 * c[i] + one_minus_beta_2 * (g[i] * g[i])
        corrected_m = m[i] if unit_1 else m[i] / correction_1
        corrected_c = c[i] if unit_2 else c[i] / correction_2
        p[i] += neg_learning_rate * corrected_m / (np.sqrt(corrected_c) + epsilon)


#: The loop, compiled on first use.
NUMBA_KERNEL = Kernel(_numba_loop)


def numba_scalars(
    *,
    learning_rate: float,
    beta_1: float,
    beta_2: float,
    epsilon: float,
    correction_1: float,
    correction_2: float,
) -> tuple[float, ...]:
    """The update's scalars as the loop reads them (``s``), for this step and the compiled
    epoch alike."""
    return (beta_1, 1 - beta_1, beta_2, 1 - beta_2, epsilon, correction_1, correction_2,
            -learning_rate)  # fmt: skip


def numba_update(
    backend: Any,
    scratch: dict[Any, Any],
    p: np.ndarray,
    g: np.ndarray,
    m: np.ndarray,
    c: np.ndarray,
    *,
    learning_rate: float,
    beta_1: float,
    beta_2: float,
    epsilon: float,
    correction_1: float,
    correction_2: float,
) -> None:
    """The reference as one compiled pass over the arrays; NumPy's version where they do not
    lie in memory alike."""
    views = flat(p, g, m, c)
    if views is None:
        numpy_update(
            backend, scratch, p, g, m, c, learning_rate=learning_rate, beta_1=beta_1,
            beta_2=beta_2, epsilon=epsilon, correction_1=correction_1, correction_2=correction_2,
        )  # fmt: skip
        return
    settings = numba_scalars(
        learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
        correction_1=correction_1, correction_2=correction_2,
    )  # fmt: skip
    backend.elementwise(NUMBA_KERNEL, views, scalars(p.dtype, *settings))


#: The CUDA body of CuPy's fused update: ``(inputs, outputs, body)``, ``T`` the arrays' float
#: type, every scalar worked out on the host.
CUPY_KERNELS = {
    "adam": (
        "T grad, T beta_1, T one_minus_beta_1, T beta_2, T one_minus_beta_2, T epsilon, "
        "T correction_1, T correction_2, T neg_learning_rate",
        "T param, T momentum, T cache",
        "momentum = beta_1 * momentum + one_minus_beta_1 * grad;\n"
        "cache = beta_2 * cache + one_minus_beta_2 * (grad * grad);\n"
        "param += neg_learning_rate * (momentum / correction_1)"
        " / (sqrt(cache / correction_2) + epsilon);",
    ),
}


def cupy_update(
    backend: Any,
    scratch: dict[Any, Any],
    param: Any,
    grad: Any,
    momentum: Any,
    cache: Any,
    *,
    learning_rate: float,
    beta_1: float,
    beta_2: float,
    epsilon: float,
    correction_1: float,
    correction_2: float,
) -> None:
    """The reference as one fused CUDA kernel: one pass over the arrays instead of a dozen."""
    backend.kernel("adam", CUPY_KERNELS)(
        grad, beta_1, 1 - beta_1, beta_2, 1 - beta_2, epsilon, correction_1, correction_2,
        -learning_rate, param, momentum, cache,
    )  # fmt: skip


class Adam(Optimizer):
    """Adaptive moment estimation with bias correction on ``iterations + 1``."""

    settings: ClassVar[Settings] = {
        **Optimizer.settings,
        "epsilon": POSITIVE,
        "beta_1": FRACTION,
        "beta_2": FRACTION,
    }
    state_names = ("momentums", "cache")
    non_negative_states = ("cache",)
    flushed_states = ("momentums", "cache")
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
        beta_1: float = 0.9,
        beta_2: float = 0.999,
    ) -> None:
        super().__init__(learning_rate, decay)
        self.epsilon = real(epsilon, "epsilon", **POSITIVE)
        self.beta_1 = real(beta_1, "beta_1", **FRACTION)
        self.beta_2 = real(beta_2, "beta_2", **FRACTION)

    def update(self, layer: Any, prefix: str, param: Any, grad: Any) -> None:
        """One Adam step on ``param``."""
        step = self.iterations + 1
        momentums = self.state(layer, f"{prefix}_momentums", param)
        cache = self.state(layer, f"{prefix}_cache", param)
        backend = layer.backend
        self.version(backend, reference_update)(
            backend,
            self.scratch,
            param,
            grad,
            momentums,
            cache,
            learning_rate=self.current_learning_rate,
            beta_1=self.beta_1,
            beta_2=self.beta_2,
            epsilon=self.epsilon,
            correction_1=1 - self.beta_1**step,
            correction_2=1 - self.beta_2**step,
        )
        self.flush(layer, momentums, cache)

    def numba_step(self) -> tuple[Callable[..., None], tuple[float, ...]]:
        """The coming step as one pass of ``_numba_loop`` (see ``Optimizer.numba_step``)."""
        step = self.iterations + 1
        return _numba_loop, numba_scalars(
            learning_rate=self.current_learning_rate, beta_1=self.beta_1, beta_2=self.beta_2,
            epsilon=self.epsilon, correction_1=1 - self.beta_1**step,
            correction_2=1 - self.beta_2**step,
        )  # fmt: skip
