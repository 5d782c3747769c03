"""Write your own optimizer: SGD with Nesterov momentum, its update written against the backend's
array module (with an in-place NumPy version and a fused CUDA kernel beside it), checked
against the formula written out, trained on the spiral, saved, loaded and run again.

    python examples/custom_optimizer.py                   # CPU (NumPy)
    python examples/custom_optimizer.py --backend auto    # CuPy where a CUDA GPU is usable
    python examples/custom_optimizer.py --epochs 20 --out /tmp/xpnn   # a quick run

Nesterov's momentum takes the step the momentum is about to take, then corrects it by the
gradient: v = momentum * v - lr * g, then param += momentum * v - lr * g (the form Keras
writes; at a constant rate it takes torch.optim.SGD(nesterov=True)'s steps, whose buffer holds
v / -lr). The script checks two steps on a small layer against that formula, and the backend's
version of the update against the reference; then it trains the spiral's model, saves it into
--out (custom_optimizer.xpnn) with the optimizer's state, loads it and checks that the loaded
model predicts exactly what the trained one does and trains on exactly as it would have. The
page "Write your own optimizer" in the docs walks through it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

import xpnn

OUT = Path(__file__).parent / "out"  # where the model file goes by default


class Help(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """--help shows the whole description as written, and every option's default."""


# --8<-- [start:reference]
def reference_update(backend, scratch, param, grad, momentums, *, learning_rate, momentum):
    """One step in place, written against the array API: runs on every backend."""
    momentums[...] = momentum * momentums - learning_rate * grad
    param += momentum * momentums - learning_rate * grad


# --8<-- [end:reference]


# --8<-- [start:versions]
def numpy_update(backend, scratch, p, g, v, *, learning_rate, momentum):
    """The reference, operation for operation, in place: no new arrays after the first step."""
    key = (p.shape, p.dtype.str)
    if key not in scratch:
        scratch[key] = (np.empty_like(p), np.empty_like(p))
    t1, t2 = scratch[key]
    v *= momentum
    np.multiply(g, learning_rate, out=t1)
    v -= t1  # v = momentum * v - learning_rate * g
    np.multiply(v, momentum, out=t2)
    t2 -= t1
    p += t2  # p += momentum * v - learning_rate * g


#: The CUDA kernel's (inputs, outputs, body): ``T`` is the arrays' float type.
CUPY_KERNELS = {
    "nesterov": (
        "T grad, T momentum, T learning_rate",
        "T param, T momentums",
        "momentums = momentum * momentums - learning_rate * grad;\n"
        "param += momentum * momentums - learning_rate * grad;",
    ),
}


def cupy_update(backend, scratch, param, grad, momentums, *, learning_rate, momentum):
    """The reference as one fused CUDA kernel: one pass over the arrays."""
    backend.kernel("nesterov", CUPY_KERNELS)(grad, momentum, learning_rate, param, momentums)


# --8<-- [end:versions]


# --8<-- [start:optimizer]
@xpnn.register  # saving and loading may name it (a file names the class, never code)
class Nesterov(xpnn.Optimizer):
    """SGD with Nesterov momentum, with the book's learning-rate decay."""

    # Each setting that enters the arithmetic, with its bounds: checked in the model's dtype.
    settings: ClassVar[dict[str, dict[str, Any]]] = {
        **xpnn.Optimizer.settings,
        "momentum": {"low": 0.0, "high": 1.0, "high_open": True},
    }
    state_names = ("momentums",)  # kept on each layer as <prefix>_momentums; saved
    versions: ClassVar[dict[str, Any]] = {"numpy": numpy_update, "cupy": cupy_update}

    def __init__(self, learning_rate=1.0, decay=0.0, momentum=0.9):
        super().__init__(learning_rate, decay)  # checks both; current_learning_rate, iterations
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be a number in [0, 1); got {momentum!r}")
        self.momentum = momentum  # each setting under its argument's name: config()

    def update(self, layer, prefix, param, grad):
        """One step on ``param``: the version for the backend, else the reference."""
        momentums = self.state(layer, f"{prefix}_momentums", param)  # zeros at first
        backend = layer.backend
        self.version(backend, reference_update)(
            backend,
            self.scratch,
            param,
            grad,
            momentums,
            learning_rate=self.current_learning_rate,  # Python floats, worked out on the host
            momentum=self.momentum,
        )
        self.flush(layer, momentums)  # subnormals to zero now and then, as xpnn's own do


# --8<-- [end:optimizer]


# --8<-- [start:check]
def check(backend: Any, seed: int = 0) -> float:
    """Two steps of Nesterov on a small Dense layer, in float64, against the formula written
    out in NumPy; and the version the backend runs against the reference. The largest
    difference from the formula, for the tests."""
    rng = np.random.default_rng(seed)
    be = xpnn.get_backend(backend, "float64")
    w0, g1, g2 = rng.standard_normal((3, 4, 2))
    layer = xpnn.Dense(4, 2, backend=be)
    layer.weights, layer.biases = be.asarray(w0.copy()), be.zeros((1, 2))  # NumPy: not w0
    optimizer = Nesterov(learning_rate=0.1, decay=0.5, momentum=0.9)
    for g in (g1, g2):
        layer.dweights, layer.dbiases = be.asarray(g), be.zeros((1, 2))
        optimizer.pre_update_params()
        optimizer.update_params(layer)
        optimizer.post_update_params()

    lr1, lr2 = 0.1, 0.1 / (1 + 0.5 * 1)  # the book's decay: lr / (1 + decay * iterations)
    v1 = -lr1 * g1
    w1 = w0 + 0.9 * v1 - lr1 * g1
    v2 = 0.9 * v1 - lr2 * g2
    w2 = w1 + 0.9 * v2 - lr2 * g2
    difference = float(np.max(np.abs(xpnn.to_numpy(layer.weights) - w2)))
    np.testing.assert_allclose(xpnn.to_numpy(layer.weights), w2, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(xpnn.to_numpy(layer.weight_momentums), v2, rtol=1e-12, atol=1e-12)

    fast = optimizer.version(be, reference_update)  # what update() runs on this backend
    p, v = be.asarray(w0.copy()), be.asarray(g1.copy())
    p_ref, v_ref = be.asarray(w0.copy()), be.asarray(g1.copy())
    fast(be, {}, p, be.asarray(g2), v, learning_rate=0.1, momentum=0.9)
    reference_update(be, {}, p_ref, be.asarray(g2), v_ref, learning_rate=0.1, momentum=0.9)
    np.testing.assert_allclose(xpnn.to_numpy(p), xpnn.to_numpy(p_ref), rtol=1e-12, atol=0)
    print(
        f"check: two steps on {be.name} ({getattr(fast, '__name__', fast)}) agree with the "
        f"formula to {difference:.1e}"
    )
    return difference


# --8<-- [end:check]


# --8<-- [start:train]
def build_model(backend: Any, seed: int, learning_rate: float, decay: float) -> xpnn.Model:
    """The spiral's 2-64-3 network, trained by Nesterov."""
    model = xpnn.Model(backend=backend, seed=seed)
    model.add(xpnn.Dense(2, 64))
    model.add(xpnn.ReLU())
    model.add(xpnn.Dense(64, 3))
    model.add(xpnn.Softmax())
    model.set(
        loss=xpnn.CategoricalCrossentropy(),
        optimizer=Nesterov(learning_rate=learning_rate, decay=decay, momentum=0.9),
        accuracy=xpnn.CategoricalAccuracy(),
    )
    model.finalize()
    return model


def run(
    backend: Any = "numpy",
    epochs: int = 300,
    out: Path = OUT,
    *,
    learning_rate: float = 1.0,
    decay: float = 1e-3,
    seed: int = 0,
    print_every: int = 100,
) -> dict[str, Any]:
    """Check, train, save, load and train on; what it found, for the tests."""
    difference = check(backend)
    X, y = xpnn.datasets.spiral_data(samples=1000, classes=3, seed=seed)
    model = build_model(backend, seed, learning_rate, decay)
    model.train(X, y, epochs=epochs, batch_size=128, print_every=print_every)
    accuracy = model.evaluate(X, y)["accuracy"]

    out.mkdir(parents=True, exist_ok=True)
    path = out / "custom_optimizer.xpnn"
    model.save(path)  # names "Nesterov", its settings, step count and momentums
    loaded = xpnn.Model.load(path, backend=backend)  # Nesterov is registered: it loads
    same = bool(np.array_equal(xpnn.to_numpy(loaded.predict(X)), xpnn.to_numpy(model.predict(X))))
    # One more epoch each, without shuffling: the state saved makes them step alike.
    for m in (model, loaded):
        m.train(X, y, epochs=1, batch_size=128, shuffle=False, verbose=False)
    same_after = bool(
        np.array_equal(xpnn.to_numpy(loaded.predict(X)), xpnn.to_numpy(model.predict(X)))
    )
    print(
        f"accuracy {accuracy:.3f}; saved to {path} as {loaded.optimizer!r}; loaded, predicts "
        f"the same: {same}; after another epoch each: {same_after}"
    )
    return {
        "accuracy": accuracy,
        "difference": difference,
        "path": path,
        "same_predictions": same,
        "same_after_training": same_after,
        "loaded": loaded,
    }


# --8<-- [end:train]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=Help)
    parser.add_argument(
        "--backend",
        choices=["auto", "numpy", "cupy", "torch", "torch:cpu", "torch:cuda", "torch:mps"],
        default="numpy",
        help="where to train: auto picks CuPy where a CUDA GPU is usable; torch runs on PyTorch",
    )
    parser.add_argument("--epochs", type=int, default=300, help="passes over the data")
    parser.add_argument("--learning-rate", type=float, default=1.0, help="the initial rate")
    parser.add_argument("--decay", type=float, default=1e-3, help="the rate's decay per step")
    parser.add_argument("--seed", type=int, default=0, help="data, initial weights and shuffles")
    parser.add_argument("--print-every", type=int, default=100, help="epochs between lines")
    parser.add_argument("--out", type=Path, default=OUT, help="folder for the model file")
    args = parser.parse_args()
    result = run(
        args.backend,
        args.epochs,
        args.out,
        learning_rate=args.learning_rate,
        decay=args.decay,
        seed=args.seed,
        print_every=args.print_every,
    )
    if not (result["same_predictions"] and result["same_after_training"]):
        raise SystemExit("the loaded model does not go on as the saved one")


if __name__ == "__main__":
    main()
