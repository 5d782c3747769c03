"""Fashion-MNIST: the book's final model, 784-128-128-10, on Zalando's clothing images.

    python examples/fashion_mnist.py                    # downloads the data once (about 30 MB)
    python examples/fashion_mnist.py --data DIR         # the four .gz files already in DIR
    python examples/fashion_mnist.py --backend auto     # CuPy where a CUDA GPU is usable
    python examples/fashion_mnist.py --synthetic --epochs 2   # no download: a quick check

The book's recipe: pixels scaled to [-1, 1], two hidden layers of 128 ReLU units, softmax with
cross-entropy, Adam with its default learning rate 0.001 and decay 1e-3, batches of 128, 10
epochs, validated on the 10,000 test images every epoch. It prints the model's summary, the
book's lines, the test figures (``evaluate(..., verbose=True)``), each class's accuracy from
the book's ``model.output_layer_activation.predictions``, and draws the training curves into
``--out``.

``--synthetic`` writes a small stand-in data set (ten noisy patterns, one per class) as the four
IDX files into a temporary folder and trains on it through the same reader: it checks the
pipeline without a network, and says nothing about the real data.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import xpnn
from xpnn.idx import write_idx

OUT = Path(__file__).parent / "out"  # where the PNG goes by default
CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


def write_synthetic(folder: Path, train: int = 2000, test: int = 500, seed: int = 0) -> None:
    """Ten random 28x28 patterns, one per class, with noise: the four files, in IDX format."""
    rng = np.random.default_rng(seed)
    patterns = rng.integers(0, 256, (10, 28, 28))
    for kind, samples in (("train", train), ("t10k", test)):
        labels = rng.integers(0, 10, samples).astype(np.uint8)
        noise = rng.normal(0, 60, (samples, 28, 28))
        images = np.clip(patterns[labels] + noise, 0, 255).astype(np.uint8)
        write_idx(folder / f"{kind}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{kind}-labels-idx1-ubyte.gz", labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backend",
        choices=["auto", "numpy", "cupy", "torch", "torch:cpu", "torch:cuda", "torch:mps"],
        default="numpy",
    )
    parser.add_argument("--data", type=Path, default=None, help="folder of the four .gz files")
    parser.add_argument("--no-download", action="store_true", help="fail if files are missing")
    parser.add_argument("--synthetic", action="store_true", help="a stand-in data set, no network")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0, help="initial weights and shuffles")
    parser.add_argument("--out", type=Path, default=OUT, help="folder for the PNG, made if missing")
    parser.add_argument("--plot", type=Path, default=Path("fashion_mnist_curves.png"))
    parser.add_argument("--no-plot", action="store_true", help="write no PNG (no matplotlib)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as temporary:
        data = args.data
        if args.synthetic:
            data = Path(temporary)
            write_synthetic(data, seed=args.seed)
        X, y, X_test, y_test = xpnn.datasets.fashion_mnist(data, download=not args.no_download)

    model = xpnn.Model(backend=args.backend, seed=args.seed)
    model.add(xpnn.Dense(X.shape[1], 128))
    model.add(xpnn.ReLU())
    model.add(xpnn.Dense(128, 128))
    model.add(xpnn.ReLU())
    model.add(xpnn.Dense(128, 10))
    model.add(xpnn.Softmax())
    model.set(
        loss=xpnn.CategoricalCrossentropy(),
        optimizer=xpnn.Adam(decay=1e-3),
        accuracy=xpnn.CategoricalAccuracy(),
    )
    model.finalize()
    model.summary()

    start = time.perf_counter()
    history = model.train(
        X,
        y,
        validation_data=(X_test, y_test),
        epochs=args.epochs,
        batch_size=args.batch_size,
        print_every=1,
    )
    seconds = time.perf_counter() - start
    model.evaluate(X_test, y_test, verbose=True)

    outputs = model.predict(X_test)
    predicted = xpnn.to_numpy(model.output_layer_activation.predictions(outputs))
    print("test accuracy per class:")
    for label, name in enumerate(CLASSES):
        mine = y_test == label
        if mine.any():
            print(f"  {name:<12} {np.mean(predicted[mine] == label):.3f}")
    steps = model.optimizer.iterations
    print(
        f"{args.epochs} epochs, {steps} steps in {seconds:.1f} s "
        f"({seconds / steps * 1e3:.2f} ms per step, validation included, on {model.backend.name})"
    )

    if not args.no_plot:
        args.out.mkdir(parents=True, exist_ok=True)
        path = history.plot(args.out / args.plot)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
