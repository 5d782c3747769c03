"""Run a book-style script of this folder on a set of classes:
``python run.py CLASSES SCRIPT [ARGS...]``.

CLASSES is ``reference`` (the book's formulas in plain NumPy, ``reference.py``) or ``xpnn``
(``xpnn.book``, on the backend ``XPNN_BOOK_BACKEND`` names). The script imports its classes
with ``from book_classes import *``, the one line a reader writes.
"""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

if os.environ.get("XPNN_CUPY_API") == "1":  # the CuPy API stand-in, as tests/conftest.py does
    sys.path.insert(0, str(HERE.parent))
    import cupy_api

    cupy_api.install()

classes, script, *arguments = sys.argv[1:]
sys.path.insert(0, str(HERE))
if classes == "xpnn":
    import xpnn.book as chosen
elif classes == "reference":
    import reference as chosen
else:
    raise SystemExit(f"CLASSES must be 'reference' or 'xpnn'; got {classes!r}")
sys.modules["book_classes"] = chosen
sys.argv = [script, *arguments]
runpy.run_path(str(HERE / script), run_name="__main__")
