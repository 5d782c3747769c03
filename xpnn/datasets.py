"""The book's toy datasets, reproducible without touching NumPy's global random state.

These follow the algorithms of ``nnfs.datasets`` (shapes, dtypes, class-sorted labels and the
order of the random draws), but every random number comes from ``np.random.default_rng(seed)``:
the same seed always gives the same arrays, and no caller's ``np.random.seed`` is disturbed.
They return host NumPy arrays; a model moves them to its own device and dtype.

``fashion_mnist`` is the book's final data set: Zalando's 70,000 clothing images, read from the
original gzip IDX files in a folder, downloaded there (checked against their SHA-256) when they
are missing.

``seed`` is anything ``np.random.default_rng`` accepts: ``None`` (fresh entropy), an int, a
``SeedSequence`` or a ``Generator`` (drawn from, and so advanced).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import urllib.request
from pathlib import Path

import numpy as np

from ._checks import positive_int
from .idx import read_idx

__all__ = ["fashion_mnist", "sine_data", "spiral_data", "vertical_data"]

Seed = int | np.random.SeedSequence | np.random.Generator | None


def _labels(samples: int, classes: int) -> np.ndarray:
    """``samples`` copies of each class index, class by class, in nnfs's dtype (uint8).

    nnfs always uses uint8, which wraps beyond 256 classes; a wider unsigned type is used only
    there, so labels stay correct.
    """
    dtype = np.min_scalar_type(classes - 1)
    return np.repeat(np.arange(classes, dtype=dtype), samples)


def spiral_data(samples: int, classes: int, seed: Seed = None) -> tuple[np.ndarray, np.ndarray]:
    """``classes`` interleaved spiral arms of ``samples`` points each: the book's main dataset.

    Arm ``c`` has radii evenly spaced over [0, 1] and angles ``2.5 * t`` where ``t`` runs evenly
    over [4c, 4c + 4] plus Gaussian noise of standard deviation 0.2. Returns ``X`` (float64,
    shape ``(samples * classes, 2)``) and ``y`` (uint8 class indices, sorted by class).
    """
    samples = positive_int(samples, "samples")
    classes = positive_int(classes, "classes")
    rng = np.random.default_rng(seed)
    radius = np.linspace(0.0, 1.0, samples)
    arms = []
    for c in range(classes):  # one draw per arm, in class order, as nnfs draws them
        theta = np.linspace(c * 4, (c + 1) * 4, samples) + rng.standard_normal(samples) * 0.2
        arms.append(np.column_stack((radius * np.sin(theta * 2.5), radius * np.cos(theta * 2.5))))
    return np.concatenate(arms), _labels(samples, classes)


def vertical_data(samples: int, classes: int, seed: Seed = None) -> tuple[np.ndarray, np.ndarray]:
    """``classes`` Gaussian blobs side by side: a dataset simple enough for a random search.

    Class ``c`` is centred at ``(c / 3, 0.5)`` with standard deviation 0.1 on each axis.
    Returns ``X`` (float64, shape ``(samples * classes, 2)``) and ``y`` (uint8, class-sorted).
    """
    samples = positive_int(samples, "samples")
    classes = positive_int(classes, "classes")
    rng = np.random.default_rng(seed)
    blobs = []
    for c in range(classes):  # x noise then y noise for each class, as nnfs draws them
        x = rng.standard_normal(samples) * 0.1 + c / 3
        y = rng.standard_normal(samples) * 0.1 + 0.5
        blobs.append(np.column_stack((x, y)))
    return np.concatenate(blobs), _labels(samples, classes)


def sine_data(samples: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """One period of ``sin(2 * pi * x)`` on ``x = i / samples``: the book's regression data.

    It has no randomness (as in nnfs), hence no seed. Returns ``X`` and ``y``, both float64 of
    shape ``(samples, 1)``, equal to nnfs's ``sine_data(samples)``.
    """
    samples = positive_int(samples, "samples")
    X = np.arange(samples).reshape(-1, 1) / samples
    return X, np.sin(2 * np.pi * X)


#: Where Zalando publishes Fashion-MNIST, and the SHA-256 of each of its four files.
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASHION_MNIST_FILES = {
    "train-images-idx3-ubyte.gz": (
        "08dc20ab1689590a0bcd66e874647b6ee8464e2d501b5a3f1f78831db19a3fdc"
    ),
    "train-labels-idx1-ubyte.gz": (
        "b0197879cbda89f3dc7b894f9fd52b858e68ea4182b6947c9d8c2b67e5f18dcc"
    ),
    "t10k-images-idx3-ubyte.gz": "78dcbbfb5a27efaf1b6c1d616caca68560be8766c5bffcb2791df9273a534229",
    "t10k-labels-idx1-ubyte.gz": "42bd18137a62d5998cdeae52bf3a0676ac6b706f5cf8439b47bb5b151ae3dccf",
}


def data_home() -> Path:
    """The folder data sets are cached in: ``$XPNN_DATA``, else ``$XDG_CACHE_HOME/xpnn``, else
    ``~/.cache/xpnn``."""
    if os.environ.get("XPNN_DATA"):
        return Path(os.environ["XPNN_DATA"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "xpnn"


def fashion_mnist(
    root: str | os.PathLike | None = None, *, download: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fashion-MNIST as the book's ``create_data_mnist`` returns it: ``(X, y, X_test, y_test)``.

    ``X`` holds the 60,000 training images as float32 rows of 784 pixels scaled to [-1, 1]
    (``(pixel - 127.5) / 127.5``), ``y`` their uint8 labels 0 to 9; ``X_test`` and ``y_test`` the
    10,000 test images. The four gzip IDX files are read from ``root``, by default
    ``data_home() / "fashion-mnist"``. Missing files are downloaded there from Zalando's
    published location when ``download`` is true (with a progress bar; each checked against its
    SHA-256 and moved into place whole), else a FileNotFoundError names them. A file that is
    not what it should be raises a ValueError naming it.
    """
    folder = data_home() / "fashion-mnist" if root is None else Path(root)
    paths = {name: folder / name for name in FASHION_MNIST_FILES}
    missing = [name for name, path in paths.items() if not path.exists()]
    if missing and not download:
        raise FileNotFoundError(
            f"Fashion-MNIST: {', '.join(missing)} missing in {folder}; pass download=True or "
            f"put the files there (from {FASHION_MNIST_URL})"
        )
    for name in missing:
        fetch(FASHION_MNIST_URL + name, paths[name], FASHION_MNIST_FILES[name])
    sets = []
    for kind in ("train", "t10k"):
        images = read_idx(paths[f"{kind}-images-idx3-ubyte.gz"], (None, 28, 28))
        labels_path = paths[f"{kind}-labels-idx1-ubyte.gz"]
        labels = read_idx(labels_path, (None,))
        if labels.shape[0] != images.shape[0]:
            raise ValueError(
                f"{labels_path}: {labels.shape[0]} labels for {images.shape[0]} images"
            )
        if labels.size and labels.max() > 9:
            raise ValueError(f"{labels_path}: label {labels.max()}; expected 0 to 9")
        X = (images.reshape(images.shape[0], -1).astype(np.float32) - 127.5) / 127.5
        sets += [X, labels.copy()]
    return tuple(sets)


def fetch(url: str, path: Path, sha256: str, *, timeout: float = 60.0) -> None:
    """Download ``url`` to ``path``, with a progress bar, if its SHA-256 is ``sha256``.

    The bytes go to a temporary file beside ``path``, which replaces ``path`` only once the
    checksum matches; otherwise it is removed and a ValueError names the URL and both sums.
    """
    from tqdm.auto import tqdm

    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with (
                open(temporary, "xb") as file,
                tqdm(total=total, unit="B", unit_scale=True, desc=path.name) as bar,
            ):
                while chunk := response.read(1 << 16):
                    file.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
                file.flush()
                os.fsync(file.fileno())
        if digest.hexdigest() != sha256:
            raise ValueError(
                f"{url}: the download's SHA-256 is {digest.hexdigest()}, expected {sha256}; "
                f"nothing was written to {path}"
            )
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
