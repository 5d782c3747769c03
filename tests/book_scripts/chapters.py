"""Run the book's own chapter scripts on ``xpnn.book`` and compare what they print:
``python chapters.py FOLDER [--backend numpy|strict|cupy] [--tolerance 0.03] [--only A,B]
[--originals DIR]``.

A maintainer's tool (the book's code is not part of this project: point it at a checkout of
the book's repository, or any folder of its scripts). For each ``*.py`` under FOLDER it makes
the xpnn variant in a temporary folder, as a reader would: the top-level class definitions
that ``xpnn.book`` names removed (their lines found with ``ast``; every other line kept as it
is) and ``from xpnn.book import *`` added after the imports that precede them. Where the
removed ``Layer_Dense`` draws its weights at another scale than the final code's 0.01 (the
regression chapter's 0.1), ``Layer_Dense.weight_scale = ...`` follows the import, as the guide
tells a reader. The original and the variant each run in their own process (``nnfs.init()``
patches NumPy), and one verdict line per chapter says how their printed lines compare:

- ``same text``: character for character;
- ``same lines``: equal text around the numbers, the first line with numbers equal to the
  digits printed (one unit of the last digit apart at most), every other number within the
  tolerance (0.03 by default: the "few hundredths" of a long training run's last digits); the
  largest difference is shown;
- ``differs``: another number of lines, other words, or a number beyond those bounds (the first
  such line is shown);
- ``fails``: the variant stops with an error; ``fails as shipped``: the original does.

The backend is ``XPNN_BOOK_BACKEND``; with ``XPNN_CUPY_API=1`` in the environment the cupy
backend runs on the CuPy API stand-in (``tests/cupy_api.py``), as ``run.py`` does.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import runpy
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
IMPORT_LINE = "from xpnn.book import *"
#: The final code's weight scale (``0.01 * np.random.randn``), ``Layer_Dense.weight_scale``.
BOOK_SCALE = 0.01
NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


def book_names() -> set[str]:
    """The class names ``from xpnn.book import *`` brings."""
    import xpnn.book

    return set(xpnn.book.__all__)


def _weight_scale(node: ast.ClassDef) -> float | None:
    """The constant ``C`` of ``C * np.random.randn(...)`` in a class's body, if any."""
    for inner in ast.walk(node):
        if (
            isinstance(inner, ast.BinOp)
            and isinstance(inner.op, ast.Mult)
            and isinstance(inner.left, ast.Constant)
            and isinstance(inner.left.value, (int, float))
            and isinstance(inner.right, ast.Call)
            and isinstance(inner.right.func, ast.Attribute)
            and inner.right.func.attr == "randn"
        ):
            return float(inner.left.value)
    return None


def make_variant(source: str, names: set[str] | None = None) -> tuple[str, list[str]]:
    """The script with the top-level classes ``names`` (default: ``xpnn.book``'s) removed and
    the import added; and the removed class names, in order. Raises SyntaxError where the
    script does not parse."""
    names = book_names() if names is None else names
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    removed: list[str] = []
    drop: set[int] = set()  # 0-based line numbers
    first_class = None
    scale = None
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name in names:
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)]) - 1
            assert node.end_lineno is not None
            drop.update(range(start, node.end_lineno))
            removed.append(node.name)
            first_class = start if first_class is None else first_class
            if node.name == "Layer_Dense":
                scale = _weight_scale(node)
    # After the imports above the first removed class (all the leading imports where none is).
    limit = first_class if first_class is not None else len(lines)
    after = 0
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)) and node.lineno - 1 < limit:
            assert node.end_lineno is not None
            after = max(after, node.end_lineno)
    added = [IMPORT_LINE + "\n"]
    if scale is not None and scale != BOOK_SCALE:
        added.append(f"Layer_Dense.weight_scale = {scale!r}\n")
    if after and not lines[after - 1].endswith("\n"):
        lines[after - 1] += "\n"
    kept = [line for index, line in enumerate(lines[:after]) if index not in drop]
    kept += added
    kept += [line for index, line in enumerate(lines[after:], after) if index not in drop]
    return "".join(kept), removed


def last_digit(number: str) -> float:
    """One unit of the last digit printed: 0.001 for "0.360", 1e-11 for "1.0475188e-04"."""
    mantissa, _, exponent = number.lower().partition("e")
    return 10.0 ** (int(exponent or 0) - len(mantissa.partition(".")[2]))


@dataclass
class Comparison:
    verdict: str  # "same text", "same lines" or "differs"
    largest: float = 0.0  # the largest difference between two numbers
    detail: str = ""  # where it differs


def compare(expected: str, got: str, tolerance: float = 0.03) -> Comparison:
    """How ``got``'s printed lines compare with ``expected``'s (see the module's verdicts)."""
    if got == expected:
        return Comparison("same text")
    want_lines, got_lines = expected.splitlines(), got.splitlines()
    largest, first = 0.0, True
    for index, (want, have) in enumerate(zip(want_lines, got_lines), 1):
        # NumPy pads printed arrays to the widest number: compare the text without spaces.
        if "".join(NUMBER.sub("#", want).split()) != "".join(NUMBER.sub("#", have).split()):
            return Comparison("differs", largest, f"line {index}: {want!r} / {have!r}")
        wanted, had = NUMBER.findall(want), NUMBER.findall(have)
        if len(wanted) != len(had):
            return Comparison("differs", largest, f"line {index}: {want!r} / {have!r}")
        for a, b in zip(wanted, had):
            difference = abs(float(a) - float(b))
            largest = max(largest, difference)
            bound = max(last_digit(a), last_digit(b)) * 1.0001 if first else tolerance
            if difference > bound:
                return Comparison("differs", largest, f"line {index}: {want!r} / {have!r}")
        first = first and not wanted
    if len(want_lines) != len(got_lines):
        return Comparison("differs", largest, f"{len(want_lines)} lines / {len(got_lines)} lines")
    return Comparison("same lines", largest)


@dataclass
class Run:
    stdout: str
    error: str  # the last line of stderr where the process failed, else ""
    seconds: float


def run_script(path: Path, *, xpnn: bool, backend: str, timeout: float) -> Run:
    """Run a script in its own process, in its folder; the variant on ``xpnn.book``."""
    environment = dict(os.environ, MPLBACKEND="Agg")
    if xpnn:
        environment["XPNN_BOOK_BACKEND"] = backend
        environment["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(ROOT), environment.get("PYTHONPATH")])
        )
        command = [sys.executable, str(Path(__file__).resolve()), "--launch", str(path)]
    else:
        environment.pop("XPNN_CUPY_API", None)
        command = [sys.executable, str(path)]
    start = time.perf_counter()
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, env=environment, cwd=path.parent,
            timeout=timeout,
        )  # fmt: skip
    except subprocess.TimeoutExpired as expired:
        out = expired.stdout or ""
        out = out.decode() if isinstance(out, bytes) else out
        return Run(out, f"timed out after {timeout:g} s", time.perf_counter() - start)
    seconds = time.perf_counter() - start
    error = ""
    if done.returncode != 0:
        tail = [line for line in done.stderr.splitlines() if line.strip()]
        error = tail[-1] if tail else f"exit status {done.returncode}"
    return Run(done.stdout, error, seconds)


def original_run(path: Path, originals: Path | None, *, timeout: float) -> Run:
    """The original's run; kept in ``originals`` (its printed lines and seconds) where given,
    and taken from there when it was kept before: the book's classes print the same on any
    backend, so one run serves every backend's pass."""
    if originals is None:
        return run_script(path, xpnn=False, backend="numpy", timeout=timeout)
    kept = originals / f"{path.stem}.out"
    if kept.exists():
        seconds, _, stdout = kept.read_text().partition("\n")
        return Run(stdout, "", float(seconds))
    run = run_script(path, xpnn=False, backend="numpy", timeout=timeout)
    if not run.error:
        originals.mkdir(parents=True, exist_ok=True)
        kept.write_text(f"{run.seconds}\n{run.stdout}")
    return run


def check_chapter(path: Path, work: Path, *, backend: str, tolerance: float, timeout: float,
                  originals: Path | None = None) -> str:  # fmt: skip
    """The verdict line of one chapter script."""
    name = path.name
    try:
        variant, removed = make_variant(path.read_text())
    except SyntaxError as error:
        return f"{name}: fails as shipped (SyntaxError, line {error.lineno})"
    original = original_run(path, originals, timeout=timeout)
    if original.error:
        return f"{name}: fails as shipped ({original.error}) [{original.seconds:.1f} s]"
    folder = work / path.stem
    folder.mkdir()
    target = folder / name
    target.write_text(variant)
    ours = run_script(target, xpnn=True, backend=backend, timeout=timeout)
    times = f"[book {original.seconds:.1f} s, xpnn {ours.seconds:.1f} s]"
    classes = f"{len(removed)} classes replaced"
    if ours.error:
        return f"{name}: fails ({ours.error}) {times}"
    result = compare(original.stdout, ours.stdout, tolerance)
    lines = len(original.stdout.splitlines())
    text = f"{name}: {result.verdict}, {lines} lines, {classes}"
    if result.verdict != "same text":
        text += f", largest difference {result.largest:.3g}"
    if result.detail:
        text += f"; first difference at {result.detail}"
    return f"{text} {times}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="the book's chapter scripts (searched below)")
    from xpnn.backends.base import BACKEND_NAMES

    backends = [name for name in BACKEND_NAMES if name != "auto"]
    parser.add_argument("--backend", default="numpy", choices=backends)
    parser.add_argument("--tolerance", type=float, default=0.03)
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per run")
    parser.add_argument(
        "--only", default="", help="only the files whose path holds one of these (A,B,...)"
    )
    parser.add_argument(
        "--originals", type=Path, default=None,
        help="keep the originals' printed lines here, and reuse them on later passes",
    )  # fmt: skip
    options = parser.parse_args(argv)
    if not options.folder.is_dir():
        parser.error(f"FOLDER must be a folder of scripts; got {str(options.folder)!r}")
    wanted = options.only.split(",")
    scripts = sorted(
        p for p in options.folder.rglob("*.py") if any(text in str(p) for text in wanted)
    )
    if not scripts:
        parser.error(f"no *.py under {str(options.folder)!r} matching {options.only!r}")
    with tempfile.TemporaryDirectory() as work:
        for path in scripts:
            line = check_chapter(
                path, Path(work), backend=options.backend, tolerance=options.tolerance,
                timeout=options.timeout, originals=options.originals,
            )  # fmt: skip
            print(line, flush=True)
    return 0


def launch(script: str) -> None:
    """Run a variant as ``__main__``, on the CuPy API stand-in where XPNN_CUPY_API=1."""
    if os.environ.get("XPNN_CUPY_API") == "1":
        sys.path.insert(0, str(HERE.parent))
        import cupy_api

        cupy_api.install()
    sys.argv = [script]
    sys.path.insert(0, str(Path(script).resolve().parent))
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--launch"]:
        launch(sys.argv[2])
    else:
        sys.exit(main())
