"""A user's script, checked by mypy --strict in the lint session against xpnn as installed
(its py.typed): the right calls pass, and each wrong one must be flagged, or its
``type: ignore`` is unused, which --strict reports as an error."""

from __future__ import annotations

import numpy as np

import xpnn
from xpnn.datasets import spiral_data

X, y = spiral_data(samples=100, classes=3, seed=0)
model = xpnn.Model(backend="numpy", seed=0)
model.add(xpnn.Dense(2, 64))
model.add(xpnn.ReLU())
model.add(xpnn.Dense(64, 3))
model.add(xpnn.Softmax())
model.set(
    loss=xpnn.CategoricalCrossentropy(),
    optimizer=xpnn.Adam(learning_rate=0.02),
    accuracy=xpnn.CategoricalAccuracy(),
)
model.finalize()
history: xpnn.History = model.train(X, y, epochs=10, batch_size=128, verbose=False)
losses: list[float] = history["loss"]
figures: dict[str, float] = model.evaluate(X, y)
parameters: list[tuple[np.ndarray, ...]] = model.get_parameters()
text: str = model.summary()

# Each of these is a mistake mypy must flag.
model.add("Dense")  # type: ignore[arg-type]
model.train(X, y, epochs="10")  # type: ignore[arg-type]
model.train(X, y, epochs=10, batch_size=128.0)  # type: ignore[arg-type]
model.set(loss=xpnn.Adam())  # type: ignore[arg-type]
model.evaluate(X, y, verbose="yes")  # type: ignore[arg-type]
model.save(42)  # type: ignore[arg-type]
name: int = model.summary()  # type: ignore[assignment]
xpnn.Model(seed="0")  # type: ignore[arg-type]
xpnn.Dense("2", 64)  # type: ignore[arg-type]
xpnn.Adam(learning_rate="0.02")  # type: ignore[arg-type]
history.plot(3)  # type: ignore[arg-type]
spiral_data(samples="100", classes=3)  # type: ignore[arg-type]
model.predict(X, batch_size="all")  # type: ignore[arg-type]


@xpnn.register
class Identity(xpnn.Layer):
    """A layer of the user's, registered for saving: the decorator keeps its class."""


kept: Identity = Identity()
xpnn.unregister(Identity)
xpnn.register(Identity())  # type: ignore[type-var]
