"""Optimizers: turn each layer's gradients into parameter updates.

The book's protocol: ``pre_update_params()``, ``update_params(layer)`` for each layer,
``post_update_params()``. A model passes one object holding all its parameters as a single flat
buffer, so a step is a few whole-buffer operations rather than a loop over layers.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ._checks import FRACTION, NON_NEGATIVE, POSITIVE, HasSettings, Part, Settings, real

__all__ = ["SGD", "Adagrad", "Adam", "Optimizer", "RMSprop"]

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

    def __init__(self, learning_rate: float, decay: float) -> None:
        self.learning_rate = real(learning_rate, "learning_rate", **POSITIVE)
        self.decay = real(decay, "decay", **NON_NEGATIVE)
        self.current_learning_rate = self.learning_rate
        self.iterations = 0
        #: Temporary arrays a backend may keep between steps (NumPy's in-place updates); the
        #: optimizer owns them, so models on the same backend never share them.
        self.scratch: dict = {}

    def pre_update_params(self) -> None:
        """Decay the learning rate for the coming step."""
        if self.decay:
            self.current_learning_rate = self.learning_rate * (
                1.0 / (1.0 + self.decay * self.iterations)
            )

    def update_params(self, layer: Any) -> None:
        """Update every trainable array of ``layer`` in place from its gradient."""
        for prefix, param, grad in layer.trainable_parameters():
            self.update(layer, prefix, param, grad)

    def post_update_params(self) -> None:
        """Count the step."""
        self.iterations += 1

    def update(self, layer: Any, prefix: str, param: Any, grad: Any) -> None:
        """Update ``param`` from ``grad``; the state lives on ``layer`` under ``prefix``."""
        raise NotImplementedError

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

    def __repr__(self) -> str:
        return f"{type(self).__name__}(learning_rate={self.learning_rate}, decay={self.decay})"


class Adam(Optimizer):
    """Adaptive moment estimation with bias correction on ``iterations + 1``."""

    settings: ClassVar[Settings] = {
        **Optimizer.settings,
        "epsilon": POSITIVE,
        "beta_1": FRACTION,
        "beta_2": FRACTION,
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
        layer.backend.adam_update(
            param,
            grad,
            momentums,
            cache,
            scratch=self.scratch,
            learning_rate=self.current_learning_rate,
            beta_1=self.beta_1,
            beta_2=self.beta_2,
            epsilon=self.epsilon,
            correction_1=1 - self.beta_1**step,
            correction_2=1 - self.beta_2**step,
        )
        self.flush(layer, momentums, cache)


class SGD(Optimizer):
    """Stochastic gradient descent, with momentum when ``momentum`` > 0."""

    settings: ClassVar[Settings] = {**Optimizer.settings, "momentum": FRACTION}

    def __init__(self, learning_rate: float = 1.0, decay: float = 0.0, momentum: float = 0.0):
        super().__init__(learning_rate, decay)
        self.momentum = real(momentum, "momentum", **FRACTION)

    def update(self, layer: Any, prefix: str, param: Any, grad: Any) -> None:
        """One SGD step on ``param``."""
        momentums = self.state(layer, f"{prefix}_momentums", param) if self.momentum else None
        layer.backend.sgd_update(
            param,
            grad,
            momentums,
            scratch=self.scratch,
            learning_rate=self.current_learning_rate,
            momentum=self.momentum,
        )
        if momentums is not None:
            self.flush(layer, momentums)


class Adagrad(Optimizer):
    """Per-parameter learning rates scaled by the root of all squared gradients so far."""

    settings: ClassVar[Settings] = {**Optimizer.settings, "epsilon": POSITIVE}

    def __init__(self, learning_rate: float = 1.0, decay: float = 0.0, epsilon: float = 1e-7):
        super().__init__(learning_rate, decay)
        self.epsilon = real(epsilon, "epsilon", **POSITIVE)

    def update(self, layer: Any, prefix: str, param: Any, grad: Any) -> None:
        """One Adagrad step on ``param``."""
        layer.backend.adagrad_update(
            param,
            grad,
            self.state(layer, f"{prefix}_cache", param),
            scratch=self.scratch,
            learning_rate=self.current_learning_rate,
            epsilon=self.epsilon,
        )


class RMSprop(Optimizer):
    """Per-parameter learning rates scaled by a moving average of squared gradients."""

    settings: ClassVar[Settings] = {**Optimizer.settings, "epsilon": POSITIVE, "rho": FRACTION}

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
        layer.backend.rmsprop_update(
            param,
            grad,
            cache,
            scratch=self.scratch,
            learning_rate=self.current_learning_rate,
            epsilon=self.epsilon,
            rho=self.rho,
        )
        self.flush(layer, cache)
