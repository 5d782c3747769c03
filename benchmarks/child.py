"""One measurement in its own process; run.py starts it and reads the JSON line it prints.

    python benchmarks/child.py measure --impl xpnn --workload W1 --samples 1000 --epochs 200
    python benchmarks/child.py info --backend numpy

run.py sets OMP_NUM_THREADS, OPENBLAS_NUM_THREADS and MKL_NUM_THREADS in this process's
environment, so NumPy's BLAS and PyTorch start with the thread count the workload asks for.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from typing import Any

from workloads import WORKLOADS, make_data

MARK = "BENCH-RESULT "


def max_rss_mib() -> float:
    """This process's peak resident set size so far (ru_maxrss, KiB on Linux), in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def blas_threads() -> dict[str, Any]:
    """The BLAS libraries loaded in this process (with the kernels OpenBLAS chose for the CPU)
    and their thread counts (threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return {}
    found = {}
    for lib in threadpool_info():
        kernels = f" ({lib['architecture']} kernels)" if lib.get("architecture") else ""
        found[f"{lib['internal_api']} {lib['version']}{kernels}"] = lib["num_threads"]
    return found


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Build one side, train ``warmup`` epochs untimed, then time ``epochs`` epochs."""
    workload = WORKLOADS[args.workload]
    X, y = make_data(workload, args.samples)
    if workload.peer == "sklearn" and not args.impl.startswith("jax"):  # one fit per call
        import sklearn_side as side

        train = side.build(args.impl, workload, X, y, backend=args.backend)
    elif args.impl == "xpnn":
        import xpnn_side as side

        train = side.build(workload, X, y, backend=args.backend)
    elif args.impl == "torch":
        import torch
        import torch_side as side
        import xpnn_side

        torch.set_num_threads(args.threads)
        # Adam's states decay toward subnormal values from xpnn's small initial weights, which
        # slow every operation on them; xpnn flushes them, so PyTorch flushes too.
        torch.set_flush_denormal(True)
        device = "cuda" if args.backend == "cupy" else "cpu"
        initial = xpnn_side.initial_parameters(workload)
        train = side.build(workload, X, y, device=device, initial=initial)
    else:  # jax-step or jax-epoch
        import jax_side as side
        import xpnn_side

        initial = xpnn_side.initial_parameters(workload)
        if workload.peer == "sklearn":  # W4: the estimators' training split (no L2 term)
            from sklearn.model_selection import train_test_split

            X, _, y, _ = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)
        train = side.build(workload, X, y, initial, mode=args.impl.split("-")[1])
    setup_rss = max_rss_mib()
    if args.warmup:
        train(args.warmup)
    start = time.perf_counter()
    loss, accuracy, steps, host_reads = train(args.epochs)
    seconds = time.perf_counter() - start
    result = {
        "impl": args.impl,
        "workload": workload.name,
        "samples": X.shape[0],
        "epochs": args.epochs,
        "steps": steps,
        "seconds": seconds,
        "loss": loss,
        "accuracy": accuracy,
        "host_reads": host_reads,
        "setup_rss_mib": setup_rss,
        "peak_rss_mib": max_rss_mib(),
        "blas_threads": blas_threads(),
        "versions": side.library_info(),
    }
    if args.impl == "xpnn":  # which path the numpy backend took: compiled (numba) or not
        import xpnn_side

        result["path"] = xpnn_side.fast_path(args.backend)
    if args.impl == "torch":
        result["torch_threads"] = torch.get_num_threads()
    return result


def info(args: argparse.Namespace) -> dict[str, Any]:
    """The environment: versions, CPU, BLAS libraries and threads, GPU availability if asked."""
    import numpy as np

    blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    numpy_blas = blas_threads() or {f"{blas['name']} {blas.get('version', '')}": "?"}
    try:
        import torch
    except ImportError:  # W4 alone needs no PyTorch
        torch = None

    import xpnn

    cpu = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if "model name" in line),
        platform.processor() or "?",
    )
    result = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "numpy": np.__version__,
        "numpy_blas": numpy_blas,
        "torch": torch.__version__ if torch else "not installed",
        "torch_threads": torch.get_num_threads() if torch else "-",
        "torch_mkl": torch.backends.mkl.is_available() if torch else "-",
        "torch_mkldnn": torch.backends.mkldnn.is_available() if torch else "-",
        "xpnn": xpnn.__version__,
        "numba": _numba_version(),
        "jax": _jax_version(),
        "loadavg": os.getloadavg(),
    }
    if args.backend == "cupy":
        try:
            backend = xpnn.get_backend("cupy")
        except (ImportError, RuntimeError) as error:
            result["error"] = f"--backend cupy: xpnn cannot use CuPy here: {error}"
            return result
        if torch is None or not torch.cuda.is_available():
            result["error"] = (
                f"--backend cupy: PyTorch {result['torch']} sees no CUDA device (a CPU-only "
                "build?); the GPU comparison needs a CUDA build of PyTorch"
            )
            return result
        result["gpu"] = f"{torch.cuda.get_device_name()} (xpnn: {backend.device})"
    return result


def _jax_version() -> str:
    """JAX's and optax's versions, or that they are missing."""
    try:
        import jax
        import optax
    except ImportError:
        return "not installed"
    return f"{jax.__version__}, optax {optax.__version__}"


def _numba_version() -> str:
    """numba's version, or why xpnn's compiled path is missing."""
    try:
        import numba
    except ImportError:
        return "not installed: xpnn runs plain NumPy, and xpnn-nojit measures the same path"
    return numba.__version__


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["measure", "info"])
    parser.add_argument(
        "--impl", choices=["xpnn", "torch", "sklearn", "jax-step", "jax-epoch"], default="xpnn"
    )
    parser.add_argument("--workload", choices=sorted(WORKLOADS), default="W1")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--backend", choices=["numpy", "cupy", "torch"], default="numpy")
    args = parser.parse_args()
    result = measure(args) if args.mode == "measure" else info(args)
    print(MARK + json.dumps(result), flush=True)
    sys.exit(2 if "error" in result else 0)


if __name__ == "__main__":
    main()
