"""The checks that need an NVIDIA GPU, in one run, with the Python that runs this file.

    python tools/gpu_check.py [--steps device,tests,examples,bench] [--out DIR]
                              [--timeout SECONDS] [-- PYTEST_ARGS]

For a machine with an NVIDIA GPU and CuPy (the ``cuda12`` or ``cuda13`` extra, or a CuPy
already there) beside xpnn's test dependencies. It installs nothing, so it also runs where no
package index is reachable (``nox -s "tests(cupy)"`` runs the suite in an environment of its
own where one is). The steps, in this order:

- ``device``: CuPy's version, the CUDA runtime and driver, each GPU's name and memory, and a
  small computation on the device (the same check as ``Model(backend="cupy")``);
- ``tests``: the suite on the cupy backend alone (``XPNN_TEST_BACKENDS=cupy``) with
  ``XPNN_REQUIRE_GPU=1``, so a cupy test that cannot run fails instead of skipping; among
  them, a training epoch under ``cupyx.allow_synchronize(False)`` (no host synchronisation)
  and data-parallel training on the GPU under ``mpiexec`` where mpi4py is installed;
  ``PYTEST_ARGS`` narrow it (``-x``, a file, ``-k``);
- ``examples``: every example with ``--backend cupy``, briefly, as the ``examples`` session
  runs them on the CPU;
- ``bench``: ``benchmarks/run.py --backend cupy --quick`` (xpnn on CuPy beside PyTorch on
  CUDA; needs a CUDA build of PyTorch).

Each step writes its output to ``DIR/<step>.log`` and a line saying whether it passed and how
long it took. ``--timeout`` stops a command that runs longer (with the processes it started)
as a failure, and the run goes on. The exit status is 0 where every step passed, 1 where one
failed, and 2 where no GPU is usable (then nothing else runs).
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STEPS = ("device", "tests", "examples", "bench")


def brief_runs(out: Path) -> list[list[str]]:
    """Each example's brief run, from examples/brief_runs.txt (the ``examples`` nox session
    reads it too): the script and its arguments, figures into ``out``."""
    text = (ROOT / "examples" / "brief_runs.txt").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return [[arg.format(out=out) for arg in shlex.split(line)] for line in lines]


_DEVICE = """
import cupy
from xpnn.backends.cupy import CupyBackend
runtime = cupy.cuda.runtime
print(f"cupy {cupy.__version__}, CUDA runtime {runtime.runtimeGetVersion()}, "
      f"driver {runtime.driverGetVersion()}")
for index in range(runtime.getDeviceCount()):
    props = runtime.getDeviceProperties(index)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    print(f"device {index}: {name}, compute capability {props['major']}.{props['minor']}, "
          f"{props['totalGlobalMem'] / 2**30:.1f} GiB")
problem = CupyBackend.unusable()
print("a computation on the device:", problem or "right")
raise SystemExit(1 if problem else 0)
"""


def commands(step: str, out: Path, pytest_args: list[str]) -> list[list[str]]:
    """The commands ``step`` runs, in order."""
    python = sys.executable
    if step == "device":
        return [[python, "-c", _DEVICE]]
    if step == "tests":
        ignore = ["--ignore=tests/test_examples.py", "--ignore=tests/test_notebook.py"]
        return [[python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *ignore, *pytest_args]]
    if step == "examples":
        figures = out / "figures"
        return [
            [python, f"examples/{script}", *args, "--backend", "cupy"]
            for script, *args in brief_runs(figures)
        ]
    return [[python, "benchmarks/run.py", "--backend", "cupy", "--quick"]]


def run_step(
    step: str, out: Path, pytest_args: list[str], timeout: float | None = None
) -> tuple[bool, float]:
    """Run ``step``'s commands from the repository's root, its output into ``out/<step>.log``;
    whether every command passed, and the seconds taken. A command still running after
    ``timeout`` seconds is stopped with everything it started (an ``mpiexec``'s ranks too) and
    counts as failed; the step's next command runs."""
    env = {**os.environ, "XPNN_TEST_BACKENDS": "cupy", "XPNN_REQUIRE_GPU": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("XPNN_CUPY_API", None)  # the real CuPy, never the stand-in
    started, passed = time.perf_counter(), True
    with open(out / f"{step}.log", "w", encoding="utf-8") as log:
        for command in commands(step, out, pytest_args):
            log.write(f"$ {' '.join(command)}\n")
            log.flush()
            process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
            try:
                status = process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                log.write(f"stopped: still running after {timeout:g} s\n")
                passed = False
                continue
            log.write(f"exit status {status}\n")
            passed = passed and status == 0
    return passed, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    """Run the chosen steps; 0 where all passed, 1 where one failed, 2 without a usable GPU."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps", default=",".join(STEPS), help=f"comma-separated, of {', '.join(STEPS)}"
    )
    parser.add_argument("--out", type=Path, help="folder for the logs (default: a new one)")
    parser.add_argument(
        "--timeout", type=float, help="seconds a command may run before it is stopped (a failure)"
    )
    parser.add_argument("pytest_args", nargs="*", help="after --: arguments for the tests step")
    args = parser.parse_args(argv)
    steps = [step.strip() for step in args.steps.split(",") if step.strip()]
    if unknown := [step for step in steps if step not in STEPS]:
        parser.error(f"--steps: unknown {', '.join(unknown)}; choose from {', '.join(STEPS)}")
    if args.timeout is not None and not args.timeout > 0:
        parser.error(f"--timeout must be a positive number of seconds; got {args.timeout:g}")
    sys.path.insert(0, str(ROOT))
    from xpnn.backends.cupy import CupyBackend

    try:
        problem = CupyBackend.unusable()
    except ImportError as error:
        problem = str(error)
    if problem is not None:
        print(f"gpu_check: no usable GPU: {problem}", file=sys.stderr)
        return 2
    out = args.out or Path(tempfile.mkdtemp(prefix="xpnn-gpu-check-"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"gpu_check: logs in {out}")
    failed = []
    for step in steps:
        passed, seconds = run_step(step, out, args.pytest_args, args.timeout)
        print(f"{step:9} {'passed' if passed else 'FAILED'} in {seconds:.0f} s ({out / step}.log)")
        if not passed:
            failed.append(step)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
