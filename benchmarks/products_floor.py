"""W2's step against its products' floor: the matrix products alone, in the same process.

    python benchmarks/products_floor.py [--rounds 5]

A W2 step (784-512-512-10, batch 256, float32) multiplies three times forward, three times for
the weight gradients and twice for the input gradients (the first layer needs none). This
times those eight products alone (NumPy's BLAS, the threads it has, each product written into
a kept array), then xpnn's training step (one epoch of 32 steps per round), in turns, and
prints the medians and the products' share of the step: 100% would be a step that costs
nothing beyond its products.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import time

import numpy as np

import xpnn

WIDTHS = (784, 512, 512, 10)
BATCH, SAMPLES = 256, 8192


def products(rng: np.random.Generator):
    """A function running the eight products of one W2 step, each into a kept array (as the
    compiled epoch writes them), so the floor times the products and nothing else."""
    pairs = list(itertools.pairwise(WIDTHS))
    weights = [rng.standard_normal(shape, dtype=np.float32) for shape in pairs]
    outputs = [rng.standard_normal((BATCH, w), dtype=np.float32) for w in WIDTHS]
    gradients = [np.empty(shape, np.float32) for shape in pairs]
    dinputs = [np.empty((BATCH, w), np.float32) for w in WIDTHS]

    def run() -> None:
        for index, w in enumerate(weights):  # forward
            np.dot(outputs[index], w, out=dinputs[index + 1])
        for index, w in enumerate(weights):  # weight gradients, input gradients
            np.dot(outputs[index].T, outputs[index + 1], out=gradients[index])
            if index:
                np.dot(outputs[index + 1], w.T, out=dinputs[index])

    return run


def model() -> xpnn.Model:
    """W2's network."""
    net = xpnn.Model(seed=0)
    for index, (n_in, n_out) in enumerate(itertools.pairwise(WIDTHS)):
        net.add(xpnn.Dense(n_in, n_out))
        net.add(xpnn.ReLU() if index < len(WIDTHS) - 2 else xpnn.Softmax())
    net.set(loss=xpnn.CategoricalCrossentropy(), optimizer=xpnn.Adam(learning_rate=1e-3))
    net.finalize()
    return net


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((SAMPLES, WIDTHS[0]), dtype=np.float32)
    y = rng.integers(0, WIDTHS[-1], SAMPLES)
    run, net = products(rng), model()
    steps = SAMPLES // BATCH
    net.train(X, y, epochs=1, batch_size=BATCH, verbose=False)  # warm-up
    floor, step = [], []
    for _ in range(args.rounds):
        start = time.perf_counter()
        for _ in range(steps):
            run()
        floor.append((time.perf_counter() - start) / steps)
        start = time.perf_counter()
        net.train(X, y, epochs=1, batch_size=BATCH, verbose=False)
        step.append((time.perf_counter() - start) / steps)
    one, five, fifteen = os.getloadavg()
    f, s = statistics.median(floor) * 1e3, statistics.median(step) * 1e3
    print(f"W2, {os.cpu_count()} cores, load {one:.2f} {five:.2f} {fifteen:.2f}")
    print(f"products alone {f:.2f} ms (min {min(floor) * 1e3:.2f}); xpnn step {s:.2f} ms ", end="")
    print(f"(min {min(step) * 1e3:.2f}); products' share of the step {f / s:.0%} ", end="")
    print(f"(best rounds {min(floor) / min(step):.0%})")


if __name__ == "__main__":
    main()
