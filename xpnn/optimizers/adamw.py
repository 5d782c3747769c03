"""AdamW: Adam with decoupled weight decay, and its update in every version, side by side.

Each parameter is first multiplied by ``shrink = 1 - current learning rate * weight_decay``,
then takes the book's Adam step, as ``torch.optim.AdamW`` does by default (every parameter,
biases too). The versions run the same operations in the same order as the reference: the
multiply, then Adam's step exactly as ``adam.py`` writes it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from .._checks import NON_NEGATIVE, Settings, real
from ..backends.jit import Kernel, flat, scalars
from . import adam
from .adam import Adam

__all__ = ["AdamW"]


def reference_update(
    backend: Any,
    scratch: dict[Any, Any],
    param: Any,
    grad: Any,
    momentum: Any,
    cache: Any,
    *,
    shrink: float,
    **adam_scalars: float,
) -> None:
    """One AdamW step in place: ``param *= shrink``, then Adam's reference step."""
    param *= shrink
    adam.reference_update(backend, scratch, param, grad, momentum, cache, **adam_scalars)


def numpy_update(
    backend: Any,
    scratch: dict[Any, Any],
    p: np.ndarray,
    g: np.ndarray,
    m: np.ndarray,
    c: np.ndarray,
    *,
    shrink: float,
    **adam_scalars: float,
) -> None:
    """The reference in place: the multiply, then Adam's NumPy version."""
    p *= shrink
    adam.numpy_update(backend, scratch, p, g, m, c, **adam_scalars)


def torch_update(
    backend: Any,
    scratch: dict[Any, Any],
    p: Any,
    g: Any,
    m: Any,
    c: Any,
    *,
    shrink: float,
    **adam_scalars: float,
) -> None:
    """The reference in torch's in-place calls: the multiply, then Adam's torch version."""
    p *= shrink
    adam.torch_update(backend, scratch, p, g, m, c, **adam_scalars)


def _numba_loop(p: Any, g: Any, m: Any, c: Any, s: Any) -> None:  # pragma: no cover - numba
    """The reference for one value at a time, in one pass; ``s`` holds the scalars (a
    division by a correction that rounds to 1 left out, as in Adam's loop)."""
    beta_1, one_minus_beta_1, beta_2, one_minus_beta_2 = s[0], s[1], s[2], s[3]
    epsilon, correction_1, correction_2, neg_learning_rate = s[4], s[5], s[6], s[7]
    shrink = s[8]
    unit_1, unit_2 = correction_1 == 1, correction_2 == 1
    for i in range(p.size):
        p[i] = p[i] * shrink
        m[i] = beta_1 * m[i] + one_minus_beta_1 * g[i]
        c[i] = beta_2 * c[i] + one_minus_beta_2 * (g[i] * g[i])
        corrected_m = m[i] if unit_1 else m[i] / correction_1
        corrected_c = c[i] if unit_2 else c[i] / correction_2
        p[i] += neg_learning_rate * corrected_m / (np.sqrt(corrected_c) + epsilon)


#: The loop, compiled on first use.
NUMBA_KERNEL = Kernel(_numba_loop)


def numba_scalars(*, shrink: float, **adam_scalars: float) -> tuple[float, ...]:
    """The update's scalars as the loop reads them (``s``): Adam's, then ``shrink``."""
    return (*adam.numba_scalars(**adam_scalars), shrink)


def numba_update(
    backend: Any,
    scratch: dict[Any, Any],
    p: np.ndarray,
    g: np.ndarray,
    m: np.ndarray,
    c: np.ndarray,
    *,
    shrink: float,
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
            backend, scratch, p, g, m, c, shrink=shrink, learning_rate=learning_rate,
            beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, correction_1=correction_1,
            correction_2=correction_2,
        )  # fmt: skip
        return
    settings = numba_scalars(
        shrink=shrink, learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2,
        epsilon=epsilon, correction_1=correction_1, correction_2=correction_2,
    )  # fmt: skip
    backend.elementwise(NUMBA_KERNEL, views, scalars(p.dtype, *settings))


#: The CUDA body of CuPy's fused update: ``(inputs, outputs, body)``, ``T`` the arrays' float
#: type, every scalar worked out on the host: the multiply, then Adam's body, in one kernel.
_ADAM_INPUTS, _ADAM_OUTPUTS, _ADAM_BODY = adam.CUPY_KERNELS["adam"]
CUPY_KERNELS = {
    "adamw": (
        f"{_ADAM_INPUTS}, T shrink",
        _ADAM_OUTPUTS,
        f"param = param * shrink;\n{_ADAM_BODY}",
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
    shrink: float,
    learning_rate: float,
    beta_1: float,
    beta_2: float,
    epsilon: float,
    correction_1: float,
    correction_2: float,
) -> None:
    """The reference as one fused CUDA kernel: one pass over the arrays."""
    backend.kernel("adamw", CUPY_KERNELS)(
        grad, beta_1, 1 - beta_1, beta_2, 1 - beta_2, epsilon, correction_1, correction_2,
        -learning_rate, shrink, param, momentum, cache,
    )  # fmt: skip


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov and Hutter), as ``torch.optim.AdamW``.

    Before each Adam step every parameter is multiplied by ``1 - current_learning_rate *
    weight_decay``: the decay follows the decayed rate and stays out of the moments, unlike an
    L2 penalty, which Adam's cache would scale down. Defaults are Adam's, and torch's
    ``weight_decay=0.01``. The state is Adam's (``momentums``, ``cache``).
    """

    settings: ClassVar[Settings] = {**Adam.settings, "weight_decay": NON_NEGATIVE}
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
        weight_decay: float = 0.01,
    ) -> None:
        super().__init__(learning_rate, decay, epsilon, beta_1, beta_2)
        self.weight_decay = real(weight_decay, "weight_decay", **NON_NEGATIVE)
        if self.learning_rate * self.weight_decay >= 1:  # the rate only decays from here
            raise ValueError(
                f"learning_rate * weight_decay must be below 1: each step multiplies the "
                f"parameters by 1 - {self.learning_rate!r} * {self.weight_decay!r}, which "
                "would flip or zero them"
            )

    def update(self, layer: Any, prefix: str, param: Any, grad: Any) -> None:
        """One AdamW step on ``param``."""
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
            shrink=1 - self.current_learning_rate * self.weight_decay,
            learning_rate=self.current_learning_rate,
            beta_1=self.beta_1,
            beta_2=self.beta_2,
            epsilon=self.epsilon,
            correction_1=1 - self.beta_1**step,
            correction_2=1 - self.beta_2**step,
        )
        self.flush(layer, momentums, cache)

    def numba_step(self) -> tuple[Callable[..., None], tuple[float, ...]]:
        """The coming step as one pass of ``_numba_loop`` (see ``Optimizer.numba_step``): Adam's
        scalars, then ``shrink``, as ``numba_scalars`` lays them out."""
        _, adam_scalars = super().numba_step()
        return _numba_loop, (*adam_scalars, 1 - self.current_learning_rate * self.weight_decay)
