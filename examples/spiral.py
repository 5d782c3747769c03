"""The book's batch-training example: spiral data (1000 x 3 classes), 2-64-3, Adam, batches of 128.

    python examples/spiral.py                    # CPU (NumPy)
    python examples/spiral.py --backend auto     # CuPy where a CUDA GPU is usable
    python examples/spiral.py --epochs 20 --out /tmp/xpnn   # a quick run

The example's training loop ("Training Loop with Batching and Accuracy") uses
Adam(learning_rate=0.05, decay=5e-7): shuffled, that plateaus near 0.82 accuracy here. The
defaults below are the defaults of that example's Adam class (0.02, decay 5e-5), which reach
0.90 within about 1000 epochs. xpnn shuffles every epoch; ``--no-shuffle`` shows why: the
book's class-sorted batches each hold one class and learn nothing (accuracy 0.333 here, 0.000
per epoch with the loop's rate).

At the end it draws the decision boundary: the class the model predicts at every point of a grid
over the data, with the training points on top, into ``--out`` (``--plot``; ``--no-plot`` to
skip).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from nnfs.datasets import spiral_data

import xpnn

OUT = Path(__file__).parent / "out"  # where the PNG goes by default


class Help(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """--help shows the whole description as written, and every option's default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.help and "(default:" in action.help:
            return action.help  # says its default in its own words
        return super()._get_help_string(action)


def plot_boundary(
    model: xpnn.Model, X: np.ndarray, y: np.ndarray, accuracy: float, path: Path
) -> None:
    """The predicted class over a grid covering ``X``, with the points of ``X`` on top."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    low, high = X.min(axis=0) - 0.1, X.max(axis=0) + 0.1
    xx, yy = np.meshgrid(np.linspace(low[0], high[0], 300), np.linspace(low[1], high[1], 300))
    grid = np.column_stack([xx.ravel(), yy.ravel()])
    classes = np.argmax(xpnn.to_numpy(model.predict(grid)), axis=1).reshape(xx.shape)

    n_classes = int(y.max()) + 1
    fig, ax = plt.subplots(figsize=(6, 6))
    levels = np.arange(n_classes + 1) - 0.5
    ax.contourf(xx, yy, classes, levels=levels, cmap="brg", alpha=0.3)
    ax.scatter(X[:, 0], X[:, 1], c=y, cmap="brg", s=6, vmin=0, vmax=n_classes - 1)
    ax.set(title=f"spiral decision boundary, accuracy {accuracy:.3f}", xlabel="x1", ylabel="x2")
    ax.set_aspect("equal")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=Help)
    parser.add_argument(
        "--backend",
        choices=["auto", "numpy", "cupy", "torch", "torch:cpu", "torch:cuda", "torch:mps"],
        default="numpy",
        help="where to train: auto picks CuPy where a CUDA GPU is usable; torch runs on PyTorch",
    )
    parser.add_argument("--epochs", type=int, default=1500, help="passes over the data")
    parser.add_argument("--batch-size", type=int, default=128, help="samples per step")
    parser.add_argument("--learning-rate", type=float, default=0.02, help="Adam's initial rate")
    parser.add_argument("--decay", type=float, default=5e-5, help="the rate's decay per step")
    parser.add_argument("--seed", type=int, default=0, help="initial weights and shuffles")
    parser.add_argument("--print-every", type=int, default=100, help="epochs between lines")
    parser.add_argument("--no-shuffle", action="store_true", help="the book's sequential batches")
    parser.add_argument("--out", type=Path, default=OUT, help="folder for the PNG, made if missing")
    parser.add_argument("--plot", type=Path, default=Path("spiral_boundary.png"), help="in --out")
    parser.add_argument("--no-plot", action="store_true", help="write no PNG (no matplotlib)")
    args = parser.parse_args()

    np.random.seed(args.seed)  # nnfs draws the spiral from NumPy's global generator
    X, y = spiral_data(samples=1000, classes=3)

    model = xpnn.Model(backend=args.backend, seed=args.seed)
    model.add(xpnn.Dense(2, 64))
    model.add(xpnn.ReLU())
    model.add(xpnn.Dense(64, 3))
    model.add(xpnn.Softmax())
    model.set(
        loss=xpnn.CategoricalCrossentropy(),
        optimizer=xpnn.Adam(learning_rate=args.learning_rate, decay=args.decay),
        accuracy=xpnn.CategoricalAccuracy(),
    )
    model.finalize()

    start = time.perf_counter()
    history = model.train(
        X,
        y,
        epochs=args.epochs,
        batch_size=args.batch_size,
        shuffle=not args.no_shuffle,
        print_every=args.print_every,
    )
    seconds = time.perf_counter() - start
    steps = model.optimizer.iterations
    result = model.evaluate(X, y)
    print(
        f"final: training accuracy {history['accuracy'][-1]:.3f}, "
        f"accuracy {result['accuracy']:.3f}, loss {result['loss']:.3f} "
        f"({steps} steps, {seconds / steps * 1e6:.0f} us per step on {model.backend.name})"
    )

    if not args.no_plot:
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / args.plot
        plot_boundary(model, X, y, result["accuracy"], path)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
