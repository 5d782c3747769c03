"""W2's optimizer step alone, against the memory-bandwidth bound.

    python benchmarks/optimizer_step.py [--size 669706] [--rounds 7] [--step 10]

Adam over W2's flat buffer (784-512-512-10: 669,706 float32 parameters) reads four arrays
(parameters, gradients, momentums, cache) and writes three: 7 x 4 bytes per parameter. The
bound is that traffic at the bandwidth this machine reaches over arrays of the same size,
measured here with the best of NumPy's copy (one thread) and a compiled copy on every core.
Each version of the update is timed on the same arrays; the medians over rounds are printed,
each round alternating the order. ``--step`` sets the bias corrections: from step 165 the
momentum's rounds to 1 in float32 (from step 17,321 the cache's too) and the compiled loop
leaves that division out.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

import xpnn
from xpnn.backends import JitBackend, NumpyBackend, jit
from xpnn.optimizers import adam


def seconds(call, repeat: int = 20) -> float:
    """The fastest of a few timed calls (after one untimed), in seconds."""
    call()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def _copy(source, target, s):  # pragma: no cover - compiled by numba
    for i in range(source.size):
        target[i] = source[i]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=784 * 512 + 512 + 512 * 512 + 512 + 5130)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--step", type=int, default=10, help="the step the corrections are for")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    p, g, m = (rng.standard_normal(args.size, dtype=np.float32) for _ in range(3))
    c = rng.random(args.size, dtype=np.float32)
    settings = dict(
        learning_rate=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
        correction_1=1 - 0.9**args.step, correction_2=1 - 0.999**args.step,
    )  # fmt: skip
    numpy_backend, scratch = NumpyBackend("float32"), {}
    versions = {
        "numpy (in place)": lambda: adam.numpy_update(
            numpy_backend, scratch, p, g, m, c, **settings
        )
    }
    copies = {"numpy copy, 1 thread": lambda: np.copyto(m, p)}
    if jit.enabled():
        os.environ["XPNN_JIT_THREADS"] = str(os.cpu_count() or 1)  # to time the update split
        jb = JitBackend("float32")
        scalars = jit.scalars(np.float32, *adam.numba_scalars(**settings))
        versions["numba, 1 thread"] = lambda: adam.NUMBA_KERNEL(p, g, m, c, scalars)
        versions[f"numba, {jit.threads()} threads"] = lambda: adam.numba_update(
            jb, {}, p, g, m, c, **settings
        )
        copy_kernel = jit.Kernel(_copy)
        copies[f"numba copy, {jit.threads()} threads"] = lambda: jb.elementwise(
            copy_kernel, (p, m), scalars
        )
    else:
        print("numba is not installed: only NumPy's version is timed")
    # Copies that move as many bytes as Adam does (3.5 values each way per parameter), and
    # copies of 128 MiB (main memory).
    sizes = {"Adam's footprint": 7 * args.size // 2, "128 MiB": 1 << 25}
    arrays = {
        where: (np.ones(n, np.float32), np.zeros(n, np.float32)) for where, n in sizes.items()
    }
    sized = {}
    for name in copies:
        for where, (source, target) in arrays.items():
            sized[f"{name}, {where}"] = (
                (lambda source=source, target=target: np.copyto(target, source))
                if name.startswith("numpy")
                else (
                    lambda source=source, target=target: jb.elementwise(
                        copy_kernel, (source, target), scalars
                    )
                )
            )
    times: dict[str, list[float]] = {name: [] for name in [*versions, *sized]}
    calls = {**versions, **sized}
    for round_ in range(args.rounds):
        names = list(calls) if round_ % 2 == 0 else list(calls)[::-1]
        for name in names:
            times[name].append(seconds(calls[name], 5 if "MiB" in name else 20))
    print(
        f"xpnn {xpnn.__version__}; {args.size:,} float32 parameters; {os.cpu_count()} cores; "
        f"corrections of step {args.step}"
    )
    rates = {}
    for name in sized:
        where = next(w for w in sizes if name.endswith(w))
        rates[name] = 2 * 4 * sizes[where] / statistics.median(times[name])
        print(f"  copy: {name:44s} {rates[name] / 1e9:7.1f} GB/s")
    adam_bytes = 7 * 4 * args.size
    bounds = {
        where: adam_bytes / max(r for n, r in rates.items() if n.endswith(where)) for where in sizes
    }
    print(
        "bandwidth bound for Adam (7 x 4 bytes per parameter): "
        + ", ".join(f"{b * 1e3:.3f} ms at the rate of {w}" for w, b in bounds.items())
    )
    for name in versions:
        median = statistics.median(times[name])
        ratios = ", ".join(f"{median / b:.2f}x the bound of {w}" for w, b in bounds.items())
        print(f"  {name:32s} {median * 1e3:7.3f} ms: {ratios}")


if __name__ == "__main__":
    main()
