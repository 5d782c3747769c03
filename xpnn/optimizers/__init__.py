"""Optimizers: turn each layer's gradients into parameter updates.

The book's protocol: ``pre_update_params()``, ``update_params(layer)`` for each layer,
``post_update_params()``. A model passes one object holding all its parameters as a single flat
buffer, so a step is a few whole-buffer operations rather than a loop over layers.

``base`` holds what every optimizer shares; each update rule has a module of its own with the
optimizer and every version of its update side by side. A new optimizer is one such module,
exported here.
"""

from . import adagrad, adam, adamw, rmsprop, sgd
from .adagrad import Adagrad
from .adam import Adam
from .adamw import AdamW
from .base import FLUSH_EVERY, Optimizer
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = ["FLUSH_EVERY", "SGD", "Adagrad", "Adam", "AdamW", "Optimizer", "RMSprop"]

#: Every fused CUDA update body by kernel name, for the tests that compile them on the host.
CUPY_KERNELS = {
    **sgd.CUPY_KERNELS,
    **adagrad.CUPY_KERNELS,
    **rmsprop.CUPY_KERNELS,
    **adam.CUPY_KERNELS,
    **adamw.CUPY_KERNELS,
}
