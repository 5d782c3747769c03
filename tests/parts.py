"""What the tests need of each of xpnn's own parts, by class name: the tables the tests
parametrize over. tests/test_parts.py checks them against the registry (``xpnn.parts``), so a
part added to xpnn without its entries here fails a test instead of going untested.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import xpnn
from xpnn import parts


def own(kind: str) -> dict[str, type]:
    """xpnn's own registered classes of ``kind`` ("layer", "loss", "optimizer", "metric")."""
    return {cls.__name__: cls for cls in parts.OWN[kind]}


class Gradient(NamedTuple):
    """What a gradient check of a layer, activation or loss feeds it (in float64)."""

    #: The part on a backend, with settings away from their defaults: ``make(backend)``.
    make: Callable[[Any], Any]
    #: The inputs' shape (a loss's predictions).
    inputs: tuple[int, ...]
    #: The inputs' values: "normal" (standard normal), "away from 0" (a kink at 0),
    #: "in (0, 1)" (probabilities of each output), "probabilities" (rows that sum to 1).
    values: str = "normal"
    #: A loss's targets: "classes" (indices or one-hot rows), "binary" (0 or 1 per output),
    #: "real" (shaped as the predictions); None for a layer.
    targets: str | None = None


#: Every layer, activation and loss (the combined softmax and loss too): tests/test_gradients.py
#: checks the gradients of each entry, so a new part needs no test of its own for them.
GRADIENTS: dict[str, Gradient] = {
    "Dense": Gradient(lambda be: xpnn.Dense(4, 3, 0.3, 0.2, 0.1, 0.05, backend=be, seed=1), (5, 4)),
    "Dropout": Gradient(lambda be: xpnn.Dropout(0.3, backend=be), (6, 4)),
    "LeakyReLU": Gradient(lambda be: xpnn.LeakyReLU(0.1, backend=be), (6, 4), "away from 0"),
    "Linear": Gradient(lambda be: xpnn.Linear(backend=be), (6, 4)),
    "ReLU": Gradient(lambda be: xpnn.ReLU(backend=be), (6, 4), "away from 0"),
    "Sigmoid": Gradient(lambda be: xpnn.Sigmoid(backend=be), (6, 4)),
    "Softmax": Gradient(lambda be: xpnn.Softmax(backend=be), (6, 4)),
    "Tanh": Gradient(lambda be: xpnn.Tanh(backend=be), (6, 4)),
    "BinaryCrossentropy": Gradient(
        lambda be: xpnn.BinaryCrossentropy(backend=be), (7, 3), "in (0, 1)", "binary"
    ),
    "CategoricalCrossentropy": Gradient(
        lambda be: xpnn.CategoricalCrossentropy(backend=be), (7, 3), "probabilities", "classes"
    ),
    "MeanAbsoluteError": Gradient(
        lambda be: xpnn.MeanAbsoluteError(backend=be), (7, 2), "normal", "real"
    ),
    "MeanSquaredError": Gradient(
        lambda be: xpnn.MeanSquaredError(backend=be), (7, 2), "normal", "real"
    ),
    "SoftmaxCategoricalCrossentropy": Gradient(
        lambda be: xpnn.SoftmaxCategoricalCrossentropy(backend=be), (8, 4), "normal", "classes"
    ),
}


class Rule(NamedTuple):
    """An optimizer as the tests train with it, and its update rule's arrays and scalars."""

    #: The optimizer with settings away from its defaults, for a small model on the spiral:
    #: data-parallel replicas, save and load, threads.
    make: Callable[[], Any]
    #: The arrays its update takes: the parameter, then each state array.
    arrays: int
    #: The scalars its update takes for one step, as the optimizer passes them.
    scalars: dict[str, float]


#: Every optimizer.
OPTIMIZERS: dict[str, Rule] = {
    "Adam": Rule(
        lambda: xpnn.Adam(learning_rate=0.01, decay=1e-3, epsilon=1e-6, beta_1=0.85, beta_2=0.99),
        3,
        {
            "learning_rate": 0.01,
            "beta_1": 0.9,
            "beta_2": 0.999,
            "epsilon": 1e-7,
            "correction_1": 1 - 0.9**3,
            "correction_2": 1 - 0.999**3,
        },
    ),
    "AdamW": Rule(
        lambda: xpnn.AdamW(
            learning_rate=0.01, decay=1e-3, epsilon=1e-6, beta_1=0.85, beta_2=0.99, weight_decay=0.1
        ),
        3,
        {
            "shrink": 1 - 0.01 * 0.1,
            "learning_rate": 0.01,
            "beta_1": 0.9,
            "beta_2": 0.999,
            "epsilon": 1e-7,
            "correction_1": 1 - 0.9**3,
            "correction_2": 1 - 0.999**3,
        },
    ),
    "SGD": Rule(
        lambda: xpnn.SGD(learning_rate=0.2, decay=1e-3, momentum=0.9),
        2,
        {"learning_rate": 0.1, "momentum": 0.9},
    ),
    "Adagrad": Rule(
        lambda: xpnn.Adagrad(learning_rate=0.2, decay=1e-4, epsilon=1e-6),
        2,
        {"learning_rate": 0.1, "epsilon": 1e-7},
    ),
    "RMSprop": Rule(
        lambda: xpnn.RMSprop(learning_rate=0.005, decay=1e-4, epsilon=1e-6, rho=0.8),
        2,
        {"learning_rate": 0.01, "epsilon": 1e-7, "rho": 0.9},
    ),
}
