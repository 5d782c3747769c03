"""xpnn beside PyTorch eager: time per training step on the same workloads, printed as ratios.

    python benchmarks/run.py [--quick] [--workloads W1,W2,W3,W4] [--rounds N]
                             [--backend numpy|cupy|torch]

Every measurement runs in a fresh child process (benchmarks/child.py), xpnn and its peer
(PyTorch; scikit-learn's MLPClassifier for W4) in alternating order over several rounds; a
table per workload gives the median over rounds.
See benchmarks/README.md for the workloads and how to read the numbers.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workloads import WORKLOADS

HERE = Path(__file__).resolve().parent
MARK = "BENCH-RESULT "
#: xpnn as installed (compiled kernels where numba is there, and the compiled epoch where the
#: model allows it), xpnn with XPNN_JIT_EPOCH=0 (compiled kernels, one step at a time), xpnn with
#: XPNN_JIT=0 (plain NumPy), PyTorch eager, and JAX: one jitted call per step, or one per epoch
#: (lax.scan over batches).
IMPLS = ("xpnn", "xpnn-steps", "xpnn-nojit", "torch", "jax-step", "jax-epoch")
#: W3 (growth) runs these.
GROWTH_IMPLS = ("xpnn", "xpnn-nojit", "torch")
#: The environment each xpnn variant runs with.
XPNN_ENV = {"xpnn": {}, "xpnn-steps": {"XPNN_JIT_EPOCH": "0"}, "xpnn-nojit": {"XPNN_JIT": "0"}}


@dataclass(frozen=True)
class Plan:
    """How much to run of one workload: data sizes, epochs per size, warm-up, rounds."""

    sizes: tuple[int, ...]
    epochs: tuple[int, ...]
    warmup: int
    rounds: int


PLANS = {  # (full, --quick)
    "W1": (Plan((1000,), (100,), 5, 9), Plan((1000,), (10,), 1, 2)),
    "W2": (Plan((8192,), (4,), 1, 3), Plan((8192,), (1,), 1, 1)),
    "W3": (
        Plan((10**3, 10**4, 10**5, 10**6), (200, 20, 2, 1), 1, 3),
        Plan((10**3, 10**4, 10**5, 10**6), (10, 1, 1, 1), 1, 1),
    ),
    "W4": (Plan((1797,), (100,), 1, 5), Plan((1797,), (10,), 1, 1)),
}


def child(args: list[str], threads: int, settings: dict[str, str] | None = None) -> dict[str, Any]:
    """Run benchmarks/child.py with ``threads`` BLAS/OpenMP threads and the environment
    variables ``settings`` (see ``XPNN_ENV``); its JSON result."""
    env = {**os.environ, **(settings or {})}
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = str(threads)
    if threads == 1:  # XLA's CPU backend runs its own thread pool: one thread
        flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {flags}".strip()
    command = [sys.executable, str(HERE / "child.py"), *args, "--threads", str(threads)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARK)]
    if not lines:
        sys.exit(f"error: {' '.join(command)} failed ({done.returncode}):\n{done.stderr}")
    result = json.loads(lines[-1][len(MARK) :])
    if done.returncode != 0:
        sys.exit(f"error: {result.get('error', done.stderr)}")
    return result


def measure(name: str, plan: Plan, size: int, epochs: int, backend: str) -> dict[str, list]:
    """``plan.rounds`` results per implementation, in an order that turns each round (so each
    goes first as often, and each pair runs back to back)."""
    threads = WORKLOADS[name].threads or os.cpu_count() or 1
    peer = WORKLOADS[name].peer
    impls = ("xpnn", "xpnn-steps", peer, "jax-epoch") if peer != "torch" else IMPLS
    impls = GROWTH_IMPLS if name == "W3" else impls
    if backend == "cupy":  # the JAX sides run on the CPU
        impls = tuple(impl for impl in impls if not impl.startswith("jax"))
    if backend == "torch":  # xpnn on torch's CPU beside PyTorch eager; no NumPy path to compare
        impls = tuple(i for i in impls if i not in XPNN_ENV or i == "xpnn")
        impls = tuple(i for i in impls if not i.startswith("jax"))
    results: dict[str, list] = {impl: [] for impl in impls}
    for round_ in range(plan.rounds):
        turn = round_ % len(impls)
        order = impls[turn:] + impls[:turn]
        for impl in order if round_ % 2 == 0 else order[::-1]:
            side = "xpnn" if impl.startswith("xpnn") else impl
            args = ["measure", "--impl", side, "--workload", name, "--backend", backend]
            args += ["--samples", str(size), "--epochs", str(epochs), "--warmup", str(plan.warmup)]
            results[impl].append(child(args, threads, XPNN_ENV.get(impl)))
    return results


def per_step(result: dict[str, Any]) -> float:
    """Seconds per training step of one child's timed epochs."""
    return result["seconds"] / result["steps"]


def ratio_text(torch_time: float, xpnn_time: float, slow: str = "torch", fast: str = "xpnn") -> str:
    """``torch/xpnn = r``, said as how much faster or slower xpnn is (or ``fast`` than
    ``slow``)."""
    ratio = torch_time / xpnn_time
    if f"{ratio:.2f}" == "1.00":
        return f"{slow}/{fast} = {ratio:.3f}: level"
    verdict = f"{ratio:.2f}x faster" if ratio > 1 else f"{1 / ratio:.2f}x slower"
    return f"{slow}/{fast} = {ratio:.2f}: {fast} is {verdict}"


def table(headers: list[str], rows: list[list[str]]) -> str:
    """A plain text table: first column left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    lines = []
    for row in [headers, ["-" * w for w in widths], *rows]:
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells))
    return "\n".join(lines)


def threads_line(results: dict[str, list]) -> str:
    """The thread counts each side's children actually ran with."""
    parts = []
    for impl, runs in results.items():
        blas = ", ".join(f"{lib}: {n}" for lib, n in runs[0]["blas_threads"].items())
        torch = f"torch.get_num_threads() {runs[0]['torch_threads']}; " if impl == "torch" else ""
        parts.append(f"{impl}: {torch}{blas or 'threadpoolctl not installed'}")
    return "threads  " + " | ".join(parts)


def report_speed(name: str, title: str, results: dict[str, list], unit: str) -> None:
    """Median time per step of each side over the rounds, the spread, and the ratio."""
    scale = {"us": 1e6, "ms": 1e3}[unit]
    medians, rows = {}, []
    for impl, runs in results.items():
        times = [per_step(r) * scale for r in runs]
        medians[impl] = statistics.median(times)
        rows.append(
            [
                impl + (f" ({runs[0]['path']})" if "path" in runs[0] else ""),
                f"{medians[impl]:.1f}",
                f"{min(times):.1f} - {max(times):.1f}",
                f"{runs[-1]['accuracy']:.3f}",
                f"{statistics.median(r['setup_rss_mib'] for r in runs):.0f}",
                f"{statistics.median(r['peak_rss_mib'] for r in runs):.0f}",
            ]
        )
    first = results["xpnn"][0]
    print(f"\n{name}: {title}")
    print(
        f"{len(results['xpnn'])} rounds per side, {first['steps']} timed steps each "
        f"({first['epochs']} epochs of {first['samples']} samples)"
    )
    headers = [
        "impl",
        f"{unit}/step median",
        "min - max over rounds",
        "last-epoch acc",
        "RSS before training MiB",
        "peak RSS MiB",
    ]
    print(table(headers, rows))
    # Each round's pair ran back to back, so its ratio is less swayed by a machine whose speed
    # drifts during the run than the ratio of medians is.
    pairs = [("torch", "xpnn"), ("jax-step", "xpnn"), ("jax-epoch", "xpnn")]
    pairs += [("torch", "xpnn-nojit"), ("xpnn-nojit", "xpnn"), ("xpnn-steps", "xpnn")]
    pairs += [("torch", "jax-epoch")]
    for slow, fast in (pair for pair in pairs if set(pair) <= set(results)):
        print(ratio_text(medians[slow], medians[fast], slow, fast))
        paired = [per_step(t) / per_step(x) for x, t in zip(results[fast], results[slow])]
        best = min(map(per_step, results[slow])) / min(map(per_step, results[fast]))
        print(
            f"  per-round {slow}/{fast}: median {statistics.median(paired):.2f}, "
            f"range {min(paired):.2f} - {max(paired):.2f}; best round of each: {best:.2f}"
        )
    reads = ", ".join(
        f"{impl} {statistics.median(r['host_reads'] / r['epochs'] for r in runs):.3g}"
        for impl, runs in results.items()
    )
    print(f"host reads per epoch (each a device synchronisation on a GPU): {reads}")
    print(threads_line(results))


def report_estimators(results: dict[str, list]) -> None:
    """W4: time per epoch of a whole fit and held-out accuracy, xpnn's estimator beside
    scikit-learn's."""
    rows, medians = [], {}
    for impl, runs in results.items():
        per_epoch = [r["seconds"] / r["epochs"] * 1e3 for r in runs]
        medians[impl] = statistics.median(per_epoch)
        accuracy = [r["accuracy"] for r in runs]
        rows.append(
            [
                f"{impl} {runs[0]['versions'][impl.split('-')[0]]}",
                f"{medians[impl]:.2f}",
                f"{min(per_epoch):.2f} - {max(per_epoch):.2f}",
                f"{min(accuracy):.3f} - {max(accuracy):.3f}",
                f"{statistics.median(r['loss'] for r in runs):.4f}",
            ]
        )
    first = results["xpnn"][0]
    print(
        "\nW4: MLPClassifier 64-128-128-10 on the digits, Adam(1e-3), batch 128, alpha 1e-4, "
        "float32, 1 thread"
    )
    print(
        f"{len(results['xpnn'])} rounds per side, each one fit of {first['epochs']} "
        f"epochs ({first['steps'] // first['epochs']} steps each) on 75% of {first['samples']} "
        "digits, accuracy on the other 25%"
    )
    headers = ["impl", "ms/epoch median", "min - max over rounds", "test accuracy", "final loss"]
    print(table(headers, rows))
    if "jax-epoch" in results:
        print(
            "jax-epoch: a compiled epoch (lax.scan) of the same network from xpnn's initial "
            "weights, on the same 75%, without the L2 term; its accuracy is on that 75%"
        )
    for peer in (impl for impl in results if impl != "xpnn"):
        ratio = medians[peer] / medians["xpnn"]
        verdict = f"{ratio:.2f}x faster" if ratio > 1 else f"{1 / ratio:.2f}x slower"
        paired = [t["seconds"] / x["seconds"] for x, t in zip(results["xpnn"], results[peer])]
        fastest = {impl: min(r["seconds"] for r in runs) for impl, runs in results.items()}
        best = fastest[peer] / fastest["xpnn"]
        print(
            f"{peer}/xpnn = {ratio:.2f}: xpnn is {verdict}; per-round: median "
            f"{statistics.median(paired):.2f}, range {min(paired):.2f} - {max(paired):.2f}; "
            f"best round of each: {best:.2f}"
        )
    print(threads_line(results))


def report_growth(sizes: tuple[int, ...], by_size: list[dict[str, list]]) -> None:
    """W3: time per epoch and per sample, and peak RSS, as the data grows."""
    rows = []
    for size, results in zip(sizes, by_size):
        row = [f"{size:,}", str(results["xpnn"][0]["steps"] // results["xpnn"][0]["epochs"])]
        medians = {}
        for impl in GROWTH_IMPLS:
            runs = results[impl]
            medians[impl] = statistics.median(r["seconds"] / r["epochs"] for r in runs)
            peak = statistics.median(r["peak_rss_mib"] for r in runs)
            if impl == "xpnn":
                row.append(f"{medians[impl] * 1e3:.1f}")
            row += [f"{medians[impl] / size * 1e6:.2f}", f"{peak:.0f}"]
        row.append(f"{medians['torch'] / medians['xpnn']:.2f}")
        row.append(f"{medians['torch'] / medians['xpnn-nojit']:.2f}")
        rows.append(row)
    print("\nW3: growth: W1's model (2-64-3, batch 128, 1 thread) on synthetic 2-feature data")
    print("(nojit: xpnn with XPNN_JIT=0, plain NumPy)")
    headers = ["samples", "steps/epoch", "xpnn ms/epoch", "xpnn us/sample", "xpnn peak RSS MiB"]
    headers += ["nojit us/sample", "nojit peak RSS MiB", "torch us/sample", "torch peak RSS MiB"]
    headers += ["torch/xpnn", "torch/nojit"]
    print(table(headers, rows))
    print(
        "medians over rounds; peak RSS is the child's ru_maxrss (whole process: interpreter, "
        "libraries, data, training)"
    )
    print(threads_line(by_size[-1]))


def cpu_seconds() -> tuple[float, float]:
    """CPU-seconds so far: the whole machine's busy time (/proc/stat; 0 elsewhere), and ours.

    Ours is this process and its finished children, so the difference over an interval is what
    other processes (and the hypervisor's steal) took from the benchmark.
    """
    mine = sum(os.times()[:4])
    try:
        with open("/proc/stat") as stat:
            ticks = [int(field) for field in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return 0.0, mine
    busy = sum(ticks) - ticks[3] - ticks[4]  # all but idle and iowait (steal counts as busy)
    return busy / os.sysconf("SC_CLK_TCK"), mine


def report_others(before: tuple[float, float], wall: float) -> None:
    """How much CPU other processes used while a workload ran; a warning past 5% of the cores."""
    after = cpu_seconds()
    if not after[0]:
        return
    others = max(0.0, (after[0] - before[0]) - (after[1] - before[1]))
    share = others / (wall * (os.cpu_count() or 1))
    print(f"machine  other processes used {others:.1f} CPU-s in {wall:.0f} s ({share:.0%} of it)")
    if share > 0.05:
        print("WARNING  the machine was busy: these numbers are noisy, all-core ones most of all")


def print_environment(info: dict[str, Any], args: argparse.Namespace) -> None:
    """The header: versions, CPU, BLAS and threads."""
    blas = ", ".join(f"{lib}: {n} threads by default" for lib, n in info["numpy_blas"].items())
    print("xpnn vs PyTorch eager benchmark" + (" (--quick)" if args.quick else ""))
    print(f"python {info['python']} on {info['platform']}")
    load = ", ".join(f"{v:.2f}" for v in info["loadavg"])
    print(f"cpu    {info['cpu']}, {info['cores']} cores; load average {load}")
    print(f"numpy  {info['numpy']}, BLAS: {blas}")
    if "OPENBLAS_CORETYPE" in os.environ:  # chooses OpenBLAS's kernels (shown above)
        print(f"       OPENBLAS_CORETYPE={os.environ['OPENBLAS_CORETYPE']} chose its kernels")
    print(
        f"torch  {info['torch']}, {info['torch_threads']} threads by default, "
        f"MKL {info['torch_mkl']}, oneDNN {info['torch_mkldnn']}"
    )
    print(f"jax    {info['jax']} (CPU; W1 and W3: one XLA thread)")
    gpu = f" on {info['gpu']}" if "gpu" in info else ""
    print(f"xpnn   {info['xpnn']}, backend {args.backend}{gpu}")
    print(f"numba  {info['numba']}; xpnn-nojit is xpnn with XPNN_JIT=0 (plain NumPy)")
    print("W1, W3 and W4 run on 1 thread per side, W2 on all cores (OMP/OPENBLAS/MKL_NUM_THREADS")
    print("set in each child, and torch.set_num_threads)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few epochs and rounds: a smoke run")
    parser.add_argument("--workloads", default="W1,W2,W3,W4", help="comma-separated: W1,...,W4")
    parser.add_argument(
        "--rounds", type=int, default=None, help="rounds per side (default: each workload's plan)"
    )
    parser.add_argument("--backend", choices=["numpy", "cupy", "torch"], default="numpy")
    args = parser.parse_args()
    if args.rounds is not None and args.rounds < 1:
        parser.error(f"--rounds must be a positive integer; got {args.rounds}")
    names = [name.strip().upper() for name in args.workloads.split(",") if name.strip()]
    if unknown := sorted(set(names) - set(PLANS)):
        parser.error(f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(PLANS)}")

    started = time.perf_counter()
    info = child(["info", "--backend", args.backend], os.cpu_count() or 1)
    print_environment(info, args)
    titles = {
        "W1": "the book's batch example: spiral, 2-64-3, batch 128, Adam(0.05, decay 5e-7), "
        "float32, 1 thread",
        "W2": "MLP 784-512-512-10, batch 256, Adam(1e-3), float32, all cores",
    }
    for name in names:
        plan = PLANS[name][1 if args.quick else 0]
        if args.rounds is not None:
            plan = dataclasses.replace(plan, rounds=args.rounds)
        before, start = cpu_seconds(), time.perf_counter()
        runs = [measure(name, plan, n, e, args.backend) for n, e in zip(plan.sizes, plan.epochs)]
        if name == "W3":
            report_growth(plan.sizes, runs)
        elif name == "W4":
            report_estimators(runs[0])
        else:
            report_speed(name, titles[name], runs[0], "us" if name == "W1" else "ms")
        report_others(before, time.perf_counter() - start)
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"\ntotal {time.perf_counter() - started:.0f} s; load average now {load}")


if __name__ == "__main__":
    main()
