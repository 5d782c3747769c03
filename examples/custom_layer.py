"""Write your own layer: LayerNorm, written against the backend's array module, checked against
numerical gradients, trained on the spiral, saved, loaded and run again.

    python examples/custom_layer.py                   # CPU (NumPy)
    python examples/custom_layer.py --backend auto    # CuPy where a CUDA GPU is usable
    python examples/custom_layer.py --epochs 20 --out /tmp/xpnn   # a quick run

LayerNorm (Ba, Kiros and Hinton, 2016) normalizes each sample's features to mean 0 and
variance 1, then scales and shifts them by two learned rows, gamma and beta. It sits between
the spiral model's first Dense layer and its ReLU. The script checks its backward pass with
xpnn.check_gradients, trains the model, saves it into --out (custom_layer.xpnn), loads it
and checks that the loaded model predicts exactly what the trained one does. The page "Write
your own layer" in the docs walks through it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

import xpnn

OUT = Path(__file__).parent / "out"  # where the model file goes by default


class Help(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """--help shows the whole description as written, and every option's default."""


# --8<-- [start:layer]
@xpnn.register  # saving and loading may name it (a file names the class, never code)
class LayerNorm(xpnn.Layer):
    """Each row normalized to mean 0 and variance 1, then ``* gamma + beta`` (learned)."""

    # (optimizer state prefix, parameter attribute, gradient attribute) for each parameter
    parameter_names = (("gamma", "gamma", "dgamma"), ("beta", "beta", "dbeta"))

    def __init__(self, n_features, epsilon=1e-5, *, backend="numpy", dtype=None):
        super().__init__(backend=backend, dtype=dtype)
        self.n_features = n_features  # each setting under its argument's name: config()
        self.epsilon = epsilon
        self.build(self.backend, np.random.default_rng(0))

    @classmethod
    def parameter_shapes(cls, **settings):
        """What a saved file must hold for a layer with these settings."""
        n = settings["n_features"]
        return {"gamma": (1, n), "beta": (1, n)}

    @classmethod
    def widths(cls, **settings):
        """Inputs taken and outputs given: a model checks its layers fit together."""
        return settings["n_features"], settings["n_features"]

    def build(self, backend, rng):
        """Fresh parameters on ``backend``: a model calls this at finalize()."""
        self.backend = backend
        shape = (1, self.n_features)
        self.gamma = backend.asarray(np.ones(shape))  # host values move once, here
        self.beta = backend.zeros(shape)
        self.dgamma = backend.zeros(shape)  # the model makes these views of its buffers
        self.dbeta = backend.zeros(shape)

    def forward(self, inputs, training=False):
        xp = self.backend.xp
        self.inputs = self._inputs(inputs)  # on the device, in the model's dtype
        mean = xp.mean(self.inputs, axis=1, keepdims=True)
        variance = xp.var(self.inputs, axis=1, keepdims=True)
        self.inv_std = 1 / xp.sqrt(variance + self.epsilon)  # kept for backward
        self.normalized = (self.inputs - mean) * self.inv_std
        self.output = self.normalized * self.gamma + self.beta
        return self.output

    def backward(self, dvalues, *, need_dinputs=True):
        xp = self.backend.xp
        dvalues = self._gradient(dvalues)  # checked against the output's shape
        # Written into the gradient arrays the model gave (bound anew, they would be copied).
        self.dgamma[...] = xp.sum(dvalues * self.normalized, axis=0, keepdims=True)
        self.dbeta[...] = xp.sum(dvalues, axis=0, keepdims=True)
        self.dinputs = None
        if need_dinputs:  # False for a model's first layer with parameters
            dnormalized = dvalues * self.gamma
            n = self.n_features
            self.dinputs = (self.inv_std / n) * (
                n * dnormalized
                - xp.sum(dnormalized, axis=1, keepdims=True)
                - self.normalized * xp.sum(dnormalized * self.normalized, axis=1, keepdims=True)
            )
        return self.dinputs


# --8<-- [end:layer]


# --8<-- [start:check]
def check(backend: Any, seed: int = 0) -> None:
    """LayerNorm's backward pass against central differences (in float64), with gamma and beta
    away from their first values so that every term of the gradient counts."""
    rng = np.random.default_rng(seed)
    layer = LayerNorm(5, backend=backend)
    layer.gamma = layer.backend.asarray(rng.uniform(0.5, 1.5, (1, 5)))
    layer.beta = layer.backend.asarray(rng.standard_normal((1, 5)))
    xpnn.check_gradients(layer, rng.standard_normal((4, 5)))  # raises if they disagree
    print(f"check_gradients: LayerNorm's gradients agree on {layer.backend.name}")


# --8<-- [end:check]


# --8<-- [start:train]
def build_model(backend: Any, seed: int, learning_rate: float, decay: float) -> xpnn.Model:
    """The spiral's 2-64-3 network with LayerNorm after its first Dense layer."""
    model = xpnn.Model(backend=backend, seed=seed)
    model.add(xpnn.Dense(2, 64))
    model.add(LayerNorm(64))
    model.add(xpnn.ReLU())
    model.add(xpnn.Dense(64, 3))
    model.add(xpnn.Softmax())
    model.set(
        loss=xpnn.CategoricalCrossentropy(),
        optimizer=xpnn.Adam(learning_rate=learning_rate, decay=decay),
        accuracy=xpnn.CategoricalAccuracy(),
    )
    model.finalize()
    return model


def run(
    backend: Any = "numpy",
    epochs: int = 300,
    out: Path = OUT,
    *,
    learning_rate: float = 0.02,
    decay: float = 5e-5,
    seed: int = 0,
    print_every: int = 100,
) -> dict[str, Any]:
    """Check, train, save, load; what it found, for the tests."""
    check(backend)
    X, y = xpnn.datasets.spiral_data(samples=1000, classes=3, seed=seed)
    model = build_model(backend, seed, learning_rate, decay)
    model.summary()
    model.train(X, y, epochs=epochs, batch_size=128, print_every=print_every)
    accuracy = model.evaluate(X, y)["accuracy"]

    out.mkdir(parents=True, exist_ok=True)
    path = out / "custom_layer.xpnn"
    model.save(path)  # names "LayerNorm" and its settings; gamma and beta as tensors
    loaded = xpnn.Model.load(path, backend=backend)  # LayerNorm is registered: it loads
    same = bool(np.array_equal(xpnn.to_numpy(loaded.predict(X)), xpnn.to_numpy(model.predict(X))))
    print(f"accuracy {accuracy:.3f}; saved to {path}; loaded, predicts the same: {same}")
    return {"accuracy": accuracy, "path": path, "same_predictions": same, "loaded": loaded}


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
    parser.add_argument("--learning-rate", type=float, default=0.02, help="Adam's initial rate")
    parser.add_argument("--decay", type=float, default=5e-5, help="the rate's decay per step")
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
    if not result["same_predictions"]:
        raise SystemExit("the loaded model predicts otherwise than the saved one")


if __name__ == "__main__":
    main()
