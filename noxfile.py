"""Test sessions over backends, lint, the examples and the documentation.

``nox`` runs the tests on numpy (twice: "tests(numpy)" with the compiled kernels numba gives
the NumPy backend, "tests(numpy-nojit)" without them, XPNN_JIT=0), strict, the cupy session,
the cupy-api session, the mpi session (data-parallel training under ``mpiexec -n 2`` and
``-n 3``), lint (ruff and mypy), every example briefly (so they cannot rot) with the
examples' tests and the notebook, and docs (the documentation site, ``mkdocs build
--strict``). The cupy session installs the CUDA extra and runs the suite where an NVIDIA GPU
is visible; elsewhere it skips with its reason and installs nothing. XPNN_REQUIRE_GPU=1 turns
that skip into a failure. The cupy-api session runs the suite's cupy path on a stand-in that
checks every CuPy call against the installed CuPy's API, on any machine (no GPU).
"tests(torch)" runs the suite on PyTorch: on CUDA, MPS or XPU where torch finds one, else on
its CPU; it installs XPNN_TEST_TORCH (pip arguments, by default "torch==2.13.0", a CPU build
where pip's index has one) before the torch extra. ``nox -s bench``, never part of the default
run, times xpnn beside PyTorch (benchmarks/README.md).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess

import nox

nox.options.sessions = ["tests", "cupy-api", "mpi", "lint", "examples", "docs"]
nox.options.error_on_missing_interpreters = False
nox.options.reuse_existing_virtualenvs = True


# The examples session runs these (they run the examples and a notebook: nothing in them
# depends on the backend), so the backend sessions leave them out.
EXAMPLE_TESTS = ["tests/test_examples.py", "tests/test_notebook.py"]
NOT_EXAMPLES = [f"--ignore={path}" for path in EXAMPLE_TESTS]
HERE = os.path.dirname(os.path.abspath(__file__))


def brief_runs(out: str) -> list[list[str]]:
    """Each example's brief run, from examples/brief_runs.txt (tools/gpu_check.py reads it
    too): the script and its arguments, figures into ``out``."""
    with open(os.path.join(HERE, "examples", "brief_runs.txt"), encoding="utf-8") as runs:
        lines = [line for line in runs if line.strip() and not line.startswith("#")]
    return [[arg.format(out=out) for arg in shlex.split(line)] for line in lines]


def _cuda_major() -> int | None:
    """The CUDA version the driver supports, from nvidia-smi; None without a visible GPU."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"CUDA Version:\s*(\d+)", out)
    return int(found.group(1)) if found else None


@nox.session
@nox.parametrize(
    "backend",
    ["numpy", "numpy-nojit", "strict", "cupy", "torch"],
    ids=["numpy", "numpy-nojit", "strict", "cupy", "torch"],
)
def tests(session: nox.Session, backend: str) -> None:
    """The whole suite on one backend ("numpy-nojit": numpy with XPNN_JIT=0).

    The test extra installs numba, so "numpy" runs the compiled kernels and "numpy-nojit" plain
    NumPy; tests/test_jit.py checks the kernels in both.
    """
    env = {"XPNN_TEST_BACKENDS": backend}
    if backend == "numpy-nojit":
        env = {"XPNN_TEST_BACKENDS": "numpy", "XPNN_JIT": "0"}
    if backend == "cupy":
        major = _cuda_major()
        if major is None:
            reason = "cupy: no NVIDIA GPU visible (nvidia-smi missing or silent)"
            if os.environ.get("XPNN_REQUIRE_GPU") == "1":
                session.error(f"XPNN_REQUIRE_GPU=1 but {reason}")
            session.skip(reason)
        session.install("-e", f".[test,{'cuda13' if major >= 13 else 'cuda12'}]")
        env["XPNN_REQUIRE_GPU"] = "1"  # a GPU is visible: a cupy failure is a failure
    elif backend == "torch":
        # torch's CPU build first, so that the extra does not pull the CUDA one (GBs) from PyPI;
        # one thread each for torch and BLAS: torch's threads spin, and on a busy machine
        # two of them make a step ten times slower.
        session.install(*shlex.split(os.environ.get("XPNN_TEST_TORCH", "torch==2.13.0")))
        session.install("-e", ".[test,torch]")
        env["OMP_NUM_THREADS"] = os.environ.get("OMP_NUM_THREADS", "1")
    else:
        session.install("-e", ".[test]")
    session.run("pytest", *NOT_EXAMPLES, *session.posargs, env=env)


@nox.session(name="cupy-api")
def cupy_api(session: nox.Session) -> None:
    """The suite's cupy path on the CuPy API stand-in: a stand-in, NOT a GPU run.

    CuPy imports without a GPU, so its real signatures can be read. tests/cupy_api.py takes the
    place of cupy: every call xpnn makes is checked against the installed CuPy (a function,
    keyword or array method CuPy lacks, implicit conversion to NumPy, a NumPy array mixed into a
    CuPy operation all fail as on CuPy), and NumPy does the arithmetic. It says nothing about
    the numbers a GPU gives (reductions, random streams, subnormals): "tests(cupy)" on a GPU
    does. Installs the plain cupy-cuda12x wheel (~130 MB, no CUDA libraries needed).
    """
    session.install("-e", ".[test]", "cupy-cuda12x>=14")
    env = {"XPNN_TEST_BACKENDS": "cupy", "XPNN_CUPY_API": "1"}
    session.run("pytest", *NOT_EXAMPLES, *session.posargs, env=env)


@nox.session
def mpi(session: nox.Session) -> None:
    """Data-parallel training under real MPI: mpi4py and the mpich wheel's mpiexec, the rules
    run with ``mpiexec -n 2`` and ``-n 3`` (tests/test_mpi.py, each launch with a timeout), the
    in-process ones (tests/test_distributed.py), the code of docs/guides/mpi.md (in one process)
    and the example on 2 ranks."""
    session.install("-e", ".[test,mpi]")
    page = "tests/test_examples.py::test_the_code_of_a_page_runs[docs/guides/mpi.md]"
    tests = ["tests/test_mpi.py", "tests/test_distributed.py", page]
    session.run("pytest", *tests, *session.posargs, env={"XPNN_TEST_BACKENDS": "numpy,strict"})
    session.run(
        "mpiexec", "-n", "2", "python", "-m", "mpi4py", "examples/distributed.py", "--epochs", "20",
        env={"OMP_NUM_THREADS": "1"},
    )  # fmt: skip


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (lint and format check) and mypy: xpnn/ as pyproject.toml's [tool.mypy] says
    (strict, a few error codes off in the modules named there), then a user's script,
    tests/typing/user_script.py, with --strict against xpnn as installed (through its
    py.typed): its wrong calls must be flagged, else their ``type: ignore`` is unused, an
    error."""
    session.install("-e", ".[lint]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")
    script, config = (os.path.abspath(f"tests/typing/{n}") for n in ("user_script.py", "mypy.ini"))
    tmp = session.create_tmp()  # no xpnn/ here: xpnn is found installed, not as source
    with session.chdir(tmp):
        session.run("mypy", "--no-incremental", "--config-file", config, script)


@nox.session
def examples(session: nox.Session) -> None:
    """Run every example briefly so they cannot rot; their PNGs go to a temporary folder. First
    tests/test_examples.py (--help, the messages, the figures) and tests/test_notebook.py (the
    notebook in a real Jupyter kernel: the summary once, the curves as a PNG)."""
    session.install("-e", ".[examples]", "pytest>=8")
    session.run("pytest", *EXAMPLE_TESTS, *session.posargs)
    out = session.create_tmp()
    for script, *args in brief_runs(out):
        session.run("python", f"examples/{script}", *args)
    # The notebook in a real Jupyter kernel (nbclient): its cells must run without an error.
    session.run("jupyter", "execute", "examples/notebook.ipynb")


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site (docs/, mkdocs.yml): ``mkdocs build --strict``, so a broken link,
    a missing reference or any warning fails. The API pages are read from the source (griffe),
    nothing is fetched (no web fonts); the site goes to a temporary folder. ``nox -s docs --
    serve`` serves it at http://127.0.0.1:8000 instead."""
    session.install("-e", ".[docs]")
    env = {"NO_MKDOCS_2_WARNING": "1"}
    if session.posargs[:1] == ["serve"]:
        session.run("mkdocs", "serve", *session.posargs[1:], env=env)
        return
    site = os.path.join(session.create_tmp(), "site")
    session.run("mkdocs", "build", "--strict", "--site-dir", site, *session.posargs, env=env)


@nox.session
def bench(session: nox.Session) -> None:
    """xpnn beside PyTorch eager: python benchmarks/run.py, posargs passed through.

    Installs the bench extra (torch>=2.1 as PyPI resolves it: on Linux x86-64 the CUDA build,
    some GB). XPNN_BENCH_TORCH, pip arguments, installs a torch of your choice first, e.g.
    XPNN_BENCH_TORCH="torch==2.13.0" for a CPU build pip can find; see benchmarks/README.md.
    """
    if torch := os.environ.get("XPNN_BENCH_TORCH"):
        session.install(*shlex.split(torch))
    session.install("-e", ".[bench]", "threadpoolctl")
    session.run("python", "benchmarks/run.py", *session.posargs)
