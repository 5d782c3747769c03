"""The digits MLP on a quiet and on a busy machine, with and without xpnn's BLAS thread choice.

    python benchmarks/busy.py [--rounds 3] [--epochs 10] [--hogs N]

Each measurement is a fresh process that trains W4's network (64-128-128-10, ReLU, softmax and
cross-entropy, Adam 1e-3) on scikit-learn's digits (75% of the 1797 rows, standardized, float32)
in batches of 32, two epochs untimed, then ``--epochs`` timed, and reports ms per epoch. Two
settings run in turns: ``XPNN_BLAS_THREADS=off`` (BLAS as NumPy loads it: all cores, as xpnn
did before it chose) and ``auto`` (xpnn's choice: one thread for this model). "busy" starts
``--hogs`` processes (default: one per core) that spin on the CPU for the whole round, as a
laptop's other work would. The load average is printed with every figure; on a machine that
other work already loads, "quiet" is not quiet, and the figures say so.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

SETTINGS = ("off", "auto")


def child(epochs: int) -> None:
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    import xpnn

    digits = load_digits()
    X_train, _, y_train, _ = train_test_split(
        digits.data, digits.target, test_size=0.25, stratify=digits.target, random_state=0
    )
    X_train = ((X_train - X_train.mean(0)) / (X_train.std(0) + 1e-8)).astype(np.float32)
    model = xpnn.Model(seed=0)
    model.add(xpnn.Dense(64, 128))
    model.add(xpnn.ReLU())
    model.add(xpnn.Dense(128, 128))
    model.add(xpnn.ReLU())
    model.add(xpnn.Dense(128, 10))
    model.add(xpnn.Softmax())
    model.set(
        loss=xpnn.CategoricalCrossentropy(),
        optimizer=xpnn.Adam(learning_rate=1e-3),
        accuracy=xpnn.CategoricalAccuracy(),
    )
    model.finalize()
    model.train(X_train, y_train, epochs=2, batch_size=32, verbose=False)
    start = time.perf_counter()
    model.train(X_train, y_train, epochs=epochs, batch_size=32, verbose=False)
    print(1e3 * (time.perf_counter() - start) / epochs)


def measure(setting: str, epochs: int) -> float:
    env = dict(os.environ, XPNN_BLAS_THREADS=setting)
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(epochs)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--hogs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child)
        return

    print(f"digits MLP, batch 32, {args.epochs} timed epochs, {os.cpu_count()} cores; {load()}")
    times: dict[tuple[str, str], list[float]] = {}
    for condition in ("quiet", "busy"):
        for index in range(args.rounds):
            hogs = []
            if condition == "busy":
                spin = "while True: pass"
                hogs = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(args.hogs)]
                time.sleep(1.0)  # let them take the cores
            try:
                order = SETTINGS if index % 2 == 0 else SETTINGS[::-1]
                for setting in order:
                    ms = measure(setting, args.epochs)
                    times.setdefault((condition, setting), []).append(ms)
                    name = f"XPNN_BLAS_THREADS={setting}"
                    print(f"  {condition:5s} {name:22s} {ms:8.1f} ms/epoch  {load()}")
            finally:
                for hog in hogs:
                    hog.kill()
                    hog.wait()
    print("\nms per epoch: median (worst) over rounds")
    for setting in SETTINGS:
        quiet, busy = times[("quiet", setting)], times[("busy", setting)]
        print(
            f"  XPNN_BLAS_THREADS={setting:4s} quiet {statistics.median(quiet):7.1f} "
            f"({max(quiet):7.1f})  busy {statistics.median(busy):7.1f} ({max(busy):7.1f})  "
            f"busy worst / quiet median {max(busy) / statistics.median(quiet):5.1f}x"
        )
    print(f"end; {load()}")


if __name__ == "__main__":
    main()
