"""The book's hand-written training loop, line for line, with xpnn objects and no Model.

    python examples/manual_loop.py                   # CPU (NumPy)
    python examples/manual_loop.py --backend auto    # CuPy where a CUDA GPU is usable
    python examples/manual_loop.py --epochs 20       # a quick run

Spiral data (1000 x 3 classes), Dense(2, 64), ReLU, Dense(64, 3), softmax with cross-entropy,
Adam, batches of 128: the workload of examples/spiral.py, written out as the loop of the book's
batch-training example ("Training Loop with Batching and Accuracy"). Each object is created with
``backend=``, and the data moves to that device once.

Two changes from the book's loop. A fresh permutation of the samples every epoch: the data is
sorted by class, so the book's sequential batches each hold one class and nothing is learnt
(``--no-shuffle``: accuracy 0.333, one class everywhere; 0.000 per epoch with the loop's rate).
And Adam(0.02, decay=5e-5), the defaults of that example's Adam class, which reach 0.90 here,
where the loop's ``--learning-rate 0.05 --decay 5e-7`` plateaus near 0.82.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from nnfs.datasets import spiral_data

import xpnn


class Help(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """--help shows the whole description as written, and every option's default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.help and "(default:" in action.help:
            return action.help  # says its default in its own words
        return super()._get_help_string(action)


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
    args = parser.parse_args()

    backend = xpnn.get_backend(args.backend)  # "auto" resolves once, for every object below
    xp = backend.xp

    np.random.seed(args.seed)  # nnfs draws the spiral from NumPy's global generator
    X_host, y_host = spiral_data(samples=1000, classes=3)
    X = backend.asarray(X_host)  # to the device once, not once per batch
    y = backend.asarray(y_host, dtype=backend.index_dtype)
    samples = X.shape[0]
    rng = np.random.default_rng(args.seed)  # the shuffles

    dense1 = xpnn.Dense(2, 64, backend=backend, seed=args.seed)
    activation1 = xpnn.ReLU(backend=backend)
    dense2 = xpnn.Dense(64, 3, backend=backend, seed=args.seed + 1)
    loss_activation = xpnn.SoftmaxCategoricalCrossentropy(backend=backend)
    accuracy = xpnn.CategoricalAccuracy(backend=backend)
    optimizer = xpnn.Adam(learning_rate=args.learning_rate, decay=args.decay)

    print(f"manual loop on {backend.name} ({backend.device}, {backend.dtype_name})")
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        order = None
        if not args.no_shuffle:
            order = backend.asarray(rng.permutation(samples), dtype=backend.index_dtype)
        # Loss and accuracy stay 0-d arrays on the device and are summed there: turning one
        # into a Python float waits for the GPU and copies, so doing it every step would stall
        # the device. They are read once, at a report.
        loss_sum = accuracy_sum = 0.0
        for begin in range(0, samples, args.batch_size):
            end = min(begin + args.batch_size, samples)
            batch = slice(begin, end) if order is None else order[begin:end]
            batch_X, batch_y = X[batch], y[batch]

            dense1.forward(batch_X)
            activation1.forward(dense1.output)
            dense2.forward(activation1.output)
            loss = loss_activation.forward(dense2.output, batch_y)  # mean loss, 0-d, on device

            predictions = xp.argmax(loss_activation.output, axis=1)
            loss_sum = loss_sum + loss * (end - begin)  # weighted by the batch's samples
            accuracy_sum = accuracy_sum + accuracy.calculate(predictions, batch_y) * (end - begin)

            loss_activation.backward(loss_activation.output, batch_y)
            dense2.backward(loss_activation.dinputs)
            activation1.backward(dense2.dinputs)
            dense1.backward(activation1.dinputs)

            optimizer.pre_update_params()
            optimizer.update_params(dense1)
            optimizer.update_params(dense2)
            optimizer.post_update_params()

        if epoch % args.print_every == 0 or epoch == args.epochs:
            print(
                f"epoch: {epoch}, acc: {float(accuracy_sum) / samples:.3f}, "
                f"loss: {float(loss_sum) / samples:.3f}, "
                f"lr: {optimizer.current_learning_rate:.6g}"
            )
    seconds = time.perf_counter() - start

    # The trained network on all the data, once more, without training.
    dense1.forward(X)
    activation1.forward(dense1.output)
    dense2.forward(activation1.output)
    loss = loss_activation.forward(dense2.output, y)
    final_accuracy = accuracy.calculate(xp.argmax(loss_activation.output, axis=1), y)
    steps = optimizer.iterations
    print(
        f"final: accuracy {float(final_accuracy):.3f}, loss {float(loss):.3f} "
        f"({steps} steps, {seconds / steps * 1e6:.0f} us per step on {backend.name})"
    )


if __name__ == "__main__":
    main()
