"""Helpers shared by the tests: namespace checks, tolerances, the spiral and its model."""

from __future__ import annotations

import numpy as np

import xpnn
import xpnn.io


def assert_on_backend(a, backend: xpnn.Backend) -> None:
    """``a`` is an array of the backend's own library, on its device (not a NumPy leak)."""
    if backend.name == "numpy":  # NumPy reductions give its own scalars, which are fine
        assert isinstance(a, (np.ndarray, np.generic)), f"{type(a)} is not a NumPy array"
        return
    assert type(a) is backend.array_type, f"{type(a)} is not {backend.array_type}"
    assert a.device == backend.device


def tolerance(dtype_name: str) -> dict:
    return (
        {"rtol": 1e-4, "atol": 1e-5} if dtype_name == "float32" else {"rtol": 1e-9, "atol": 1e-11}
    )


def spiral(samples: int = 1000, classes: int = 3, seed: int = 0):
    """The batch example's data: nnfs's spiral_data, made reproducible with NumPy's global seed."""
    from nnfs.datasets import spiral_data

    state = np.random.get_state()
    np.random.seed(seed)
    try:
        return spiral_data(samples=samples, classes=classes)
    finally:
        np.random.set_state(state)


def seed_model(backend, seed: int = 0, dtype: str = "float32", **adam) -> xpnn.Model:
    """The batch example's network: 2-64-3, ReLU, softmax with cross-entropy, Adam."""
    model = xpnn.Model(backend=backend, seed=seed, dtype=dtype)
    model.add(xpnn.Dense(2, 64))
    model.add(xpnn.ReLU())
    model.add(xpnn.Dense(64, 3))
    model.add(xpnn.Softmax())
    model.set(
        loss=xpnn.CategoricalCrossentropy(),
        optimizer=xpnn.Adam(**(adam or {"learning_rate": 0.05, "decay": 5e-7})),
        accuracy=xpnn.CategoricalAccuracy(),
    )
    model.finalize()
    return model


def dropout_model(backend) -> xpnn.Model:
    """The batch example's network with Dropout after the hidden layer."""
    model = xpnn.Model(backend=backend, seed=0)
    for layer in (xpnn.Dense(2, 64), xpnn.ReLU(), xpnn.Dropout(0.1), xpnn.Dense(64, 3)):
        model.add(layer)
    model.add(xpnn.Softmax())
    model.set(
        loss=xpnn.CategoricalCrossentropy(),
        optimizer=xpnn.Adam(learning_rate=0.05, decay=5e-7),
        accuracy=xpnn.CategoricalAccuracy(),
    )
    model.finalize()
    return model


def press_ctrl_c_at_step(model: xpnn.Model, step: int, monkeypatch) -> None:
    """Send SIGINT to this process right after the optimizer's ``step``-th update."""
    import os
    import signal

    original = model.optimizer.post_update_params

    def post_update_params():
        original()
        if model.optimizer.iterations == step:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(model.optimizer, "post_update_params", post_update_params)


def book_step(dense1, relu, dense2, head, optimizer, X, y):
    """One step of the book's hand-written loop (forward, backward, update); returns the loss."""
    dense1.forward(X)
    relu.forward(dense1.output)
    dense2.forward(relu.output)
    loss = head.forward(dense2.output, y)
    head.backward(head.output, y)
    dense2.backward(head.dinputs)
    relu.backward(dense2.dinputs)
    dense1.backward(relu.dinputs)
    optimizer.pre_update_params()
    optimizer.update_params(dense1)
    optimizer.update_params(dense2)
    optimizer.post_update_params()
    return loss


def load_model(path, backend=None, dtype=None) -> xpnn.Model:
    """``xpnn.io.load_model`` building an ``xpnn.Model``, as ``Model.load`` does."""
    return xpnn.io.load_model(xpnn.Model, path, backend, dtype)


def load_checkpoint(path, backend=None, dtype=None) -> tuple[xpnn.Model, dict | None]:
    """``xpnn.io.load_checkpoint`` building an ``xpnn.Model``: the model and its checkpoint."""
    return xpnn.io.load_checkpoint(xpnn.Model, path, backend, dtype)
