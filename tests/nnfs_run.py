"""Train the batch example's network through a Model and through the book's loop, after
nnfs.init() or not, and save the parameters: ``python nnfs_run.py ORDER BACKEND OUT.npz``.

ORDER is "before" (``nnfs.init()`` before ``import xpnn``), "after" (after it) or "none".
"""

from __future__ import annotations

import os
import sys

if os.environ.get("XPNN_CUPY_API") == "1":  # the cupy-api session: as conftest.py does
    import cupy_api

    cupy_api.install()

order, backend, out = sys.argv[1:4]
if order == "before":
    import nnfs

    nnfs.init()
import numpy as np  # noqa: E402 (the order of imports is what is tested)
from helpers import book_step  # noqa: E402 (beside this script)

import xpnn  # noqa: E402

if order == "after":
    import nnfs

    nnfs.init()

X, y = xpnn.datasets.spiral_data(samples=100, classes=3, seed=0)

compiled_steps = []  # the steps the compiled epoch ran (where the backend has it)
if xpnn.get_backend(backend).fast_path == "numba":
    from xpnn.training import compiled

    kernel = compiled.KERNEL

    def counting(*args):
        compiled_steps.append(args[4])  # its steps
        return kernel(*args)

    compiled.KERNEL = counting

model = xpnn.Model(backend=backend, seed=0)
model.add(xpnn.Dense(2, 64))
model.add(xpnn.ReLU())
model.add(xpnn.Dropout(0.1))
model.add(xpnn.Dense(64, 3))
model.add(xpnn.Softmax())
model.set(
    loss=xpnn.CategoricalCrossentropy(),
    optimizer=xpnn.Adam(learning_rate=0.02, decay=5e-5),
    accuracy=xpnn.CategoricalAccuracy(),
)
model.finalize()
model.train(X, y, epochs=20, batch_size=64, verbose=False)
arrays = {
    f"model{i}_{j}": a
    for i, layer in enumerate(model.get_parameters())
    for j, a in enumerate(layer)
}

dense1 = xpnn.Dense(2, 64, backend=backend, seed=1)
relu = xpnn.ReLU(backend=backend)
dense2 = xpnn.Dense(64, 3, backend=backend, seed=2)
head = xpnn.SoftmaxCategoricalCrossentropy(backend=backend)
optimizer = xpnn.SGD(learning_rate=1.0, decay=1e-3, momentum=0.9)
for _ in range(20):
    loss = book_step(dense1, relu, dense2, head, optimizer, X, y)
for name in ("weights", "biases"):
    arrays[f"loop1_{name}"] = xpnn.to_numpy(getattr(dense1, name))
    arrays[f"loop2_{name}"] = xpnn.to_numpy(getattr(dense2, name))
arrays["loop_loss"] = xpnn.to_numpy(loss)
arrays["compiled_steps"] = np.array(sum(compiled_steps))
np.savez(out, **arrays)
