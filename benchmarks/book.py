"""The batch-training notebook's loop on the book's classes and on ``xpnn.book``, side by side.

    python benchmarks/book.py [--epochs 10001] [--rounds 3] [--backend numpy] [--fast]

The loop (``tests/book_scripts/batches.py``: spiral data, 3,000 samples, batches of 128,
``Optimiser_Adam``, a line every 100 epochs) runs as a script in its own process, once with
reference classes written from the book's formulas (``tests/book_scripts/reference.py``:
plain NumPy, as the book's own) and once with ``from xpnn.book import *``, alternating, for
``--rounds`` rounds. Printed: each run's wall time (the whole process, start-up included), the
medians and their ratio, and whether both printed the same lines. ``--fast`` runs ``xpnn.book``
with ``XPNN_BOOK_EXACT=0`` (xpnn's float32 products instead of the book's). A measurement to
read, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNNER = ROOT / "tests" / "book_scripts" / "run.py"


def run(classes: str, epochs: int, backend: str, fast: bool) -> tuple[float, str]:
    """Wall seconds and printed lines of one run of the loop."""
    env = dict(os.environ, EPOCHS=str(epochs), XPNN_BOOK_BACKEND=backend)
    env["XPNN_BOOK_EXACT"] = "0" if fast else "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(RUNNER), classes, "batches.py"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{classes} failed:\n{done.stderr[-2000:]}")
    return seconds, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10001)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backend", default="numpy", choices=("numpy", "strict", "cupy"))
    parser.add_argument("--fast", action="store_true", help="xpnn's own float32 products")
    args = parser.parse_args()
    times: dict[str, list[float]] = {"reference": [], "xpnn": []}
    outputs: dict[str, str] = {}
    for round_ in range(args.rounds):
        order = ("reference", "xpnn") if round_ % 2 == 0 else ("xpnn", "reference")
        for classes in order:
            seconds, outputs[classes] = run(classes, args.epochs, args.backend, args.fast)
            times[classes].append(seconds)
            print(f"round {round_ + 1}: {classes:9s} {seconds:7.2f} s", flush=True)
    book, ours = (statistics.median(times[k]) for k in ("reference", "xpnn"))
    steps = args.epochs * 24
    print(
        f"book's classes {book:.2f} s ({book / steps * 1e6:.1f} us/step), xpnn.book on "
        f"{args.backend}{' (fast)' if args.fast else ''} {ours:.2f} s "
        f"({ours / steps * 1e6:.1f} us/step): {book / ours:.2f}x"
    )
    same = outputs["reference"] == outputs["xpnn"]
    print("printed lines:", "the same" if same else "DIFFERENT")


if __name__ == "__main__":
    main()
