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


class Help(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """--help shows the whole description as written, and every option's default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.help and "(default:" in action.help:
            return action.help  # says its default in its own words
        return super()._get_help_string(action)


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


def offline_help(data: Path | None, no_download: bool) -> str:
    """What to do when the data cannot be read: where the four files go, or the stand-in."""
    folder = data if data is not None else xpnn.datasets.data_home() / "fashion-mnist"
    names = "\n".join(f"    {name}" for name in xpnn.datasets.FASHION_MNIST_FILES)
    lines = [
        f"This example needs the four Fashion-MNIST files in {folder}:",
        names,
        f"Download them from {xpnn.datasets.FASHION_MNIST_URL}",
        "into that folder, or into another one passed as --data DIR.",
    ]
    if no_download:
        lines.append("Without --no-download, the example downloads them itself (about 30 MB).")
    lines += [
        "To try the pipeline without the data:",
        "    python examples/fashion_mnist.py --synthetic --epochs 2",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=Help)
    parser.add_argument(
        "--backend",
        choices=["auto", "numpy", "cupy", "torch", "torch:cpu", "torch:cuda", "torch:mps"],
        default="numpy",
        help="where to train: auto picks CuPy where a CUDA GPU is usable; torch runs on PyTorch",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="folder of the four .gz files (default: $XPNN_DATA/fashion-mnist, else "
        "~/.cache/xpnn/fashion-mnist)",
    )
    parser.add_argument(
        "--no-download", action="store_true", help="stop if files are missing: no network"
    )
    parser.add_argument("--synthetic", action="store_true", help="a stand-in data set, no network")
    parser.add_argument("--epochs", type=int, default=10, help="passes over the data")
    parser.add_argument("--batch-size", type=int, default=128, help="samples per step")
    parser.add_argument("--seed", type=int, default=0, help="initial weights and shuffles")
    parser.add_argument("--out", type=Path, default=OUT, help="folder for the PNG, made if missing")
    parser.add_argument(
        "--plot",
        type=Path,
        default=None,
        help="the PNG's name in --out (default: fashion_mnist_curves.png; "
        "fashion_mnist_synthetic_curves.png with --synthetic)",
    )
    parser.add_argument("--no-plot", action="store_true", help="write no PNG (no matplotlib)")
    args = parser.parse_args()

    source = "synthetic stand-in" if args.synthetic else "Fashion-MNIST"
    with tempfile.TemporaryDirectory() as temporary:
        data = args.data
        if args.synthetic:
            data = Path(temporary)
            write_synthetic(data, seed=args.seed)
            print("Data: a synthetic stand-in (ten noisy patterns), not Fashion-MNIST")
        try:
            X, y, X_test, y_test = xpnn.datasets.fashion_mnist(data, download=not args.no_download)
        except FileNotFoundError:
            if not args.no_download:
                raise
            advice = offline_help(data, no_download=True)
            raise SystemExit(f"--no-download: the files are missing.\n{advice}") from None
        except (OSError, ValueError) as error:  # offline, or not the files expected
            raise SystemExit(f"{error}\n\n{offline_help(data, no_download=False)}") from None

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
        f"({seconds / steps * 1e3:.2f} ms per step, validation included, on {model.backend.name}) "
        f"on the {source}"
    )

    if not args.no_plot:
        args.out.mkdir(parents=True, exist_ok=True)
        default = "fashion_mnist_synthetic_curves.png" if args.synthetic else None
        plot = args.plot or Path(default or "fashion_mnist_curves.png")
        path = history.plot(
            args.out / plot, title=f"{source}: {args.epochs} epoch{'' if args.epochs == 1 else 's'}"
        )
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
