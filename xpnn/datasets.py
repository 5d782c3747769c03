"""The book's toy datasets, reproducible without touching NumPy's global random state.

These follow the algorithms of ``nnfs.datasets`` (shapes, dtypes, class-sorted labels and the
order of the random draws), but every random number comes from ``np.random.default_rng(seed)``:
the same seed always gives the same arrays, and no caller's ``np.random.seed`` is disturbed.
They return host NumPy arrays; a model moves them to its own device and dtype.

``fashion_mnist`` is the book's final data set: Zalando's 70,000 clothing images, read from the
original gzip IDX files in a folder, downloaded there when they are missing (bounded in size
and time, checked against their SHA-256).

``seed`` is anything ``np.random.default_rng`` accepts: ``None`` (fresh entropy), an int, a
``SeedSequence`` or a ``Generator`` (drawn from, and so advanced).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ._checks import positive_int, shown
from .download import fetch, remove_leftovers
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


def _generator(seed: Seed) -> np.random.Generator:
    """``np.random.default_rng(seed)``, or an error that names ``seed``."""
    if isinstance(seed, bool):
        raise TypeError("seed must be None, an int, a SeedSequence or a Generator; got a bool")
    try:
        return np.random.default_rng(seed)
    except (TypeError, ValueError) as error:
        raise type(error)(
            f"seed must be None, a non-negative int, a SeedSequence or a Generator; got "
            f"{shown(seed)} ({error})"
        ) from None


def spiral_data(samples: int, classes: int, seed: Seed = None) -> tuple[np.ndarray, np.ndarray]:
    """``classes`` interleaved spiral arms of ``samples`` points each: the book's main dataset.

    Arm ``c`` has radii evenly spaced over [0, 1] and angles ``2.5 * t`` where ``t`` runs evenly
    over [4c, 4c + 4] plus Gaussian noise of standard deviation 0.2. Returns ``X`` (float64,
    shape ``(samples * classes, 2)``) and ``y`` (uint8 class indices, sorted by class).

    Examples:
        >>> X, y = spiral_data(samples=100, classes=3, seed=0)
        >>> X.shape, y.shape, y.dtype.name, sorted(set(y.tolist()))
        ((300, 2), (300,), 'uint8', [0, 1, 2])
    """
    samples = positive_int(samples, "samples")
    classes = positive_int(classes, "classes")
    rng = _generator(seed)
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
    rng = _generator(seed)
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


#: Where Zalando publishes Fashion-MNIST, and the size in bytes and SHA-256 of each of its files.
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASHION_MNIST_FILES = {
    "train-images-idx3-ubyte.gz": (
        26421880,
        "08dc20ab1689590a0bcd66e874647b6ee8464e2d501b5a3f1f78831db19a3fdc",
    ),
    "train-labels-idx1-ubyte.gz": (
        29515,
        "b0197879cbda89f3dc7b894f9fd52b858e68ea4182b6947c9d8c2b67e5f18dcc",
    ),
    "t10k-images-idx3-ubyte.gz": (
        4422102,
        "78dcbbfb5a27efaf1b6c1d616caca68560be8766c5bffcb2791df9273a534229",
    ),
    "t10k-labels-idx1-ubyte.gz": (
        5148,
        "42bd18137a62d5998cdeae52bf3a0676ac6b706f5cf8439b47bb5b151ae3dccf",
    ),
}
#: The number of images (and labels) in each part of Fashion-MNIST.
FASHION_MNIST_COUNTS = {"train": 60_000, "t10k": 10_000}


def data_home() -> Path:
    """The folder data sets are cached in: ``$XPNN_DATA``, else ``$XDG_CACHE_HOME/xpnn``, else
    ``~/.cache/xpnn``."""
    chosen = os.environ.get("XPNN_DATA", "").strip()  # blank: unset, as the other variables
    if chosen:
        return Path(chosen).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "xpnn"


def fashion_mnist(
    root: str | os.PathLike[str] | None = None, *, download: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fashion-MNIST as the book's ``create_data_mnist`` returns it: ``(X, y, X_test, y_test)``.

    ``X`` holds the 60,000 training images as float32 rows of 784 pixels scaled to [-1, 1]
    (``(pixel - 127.5) / 127.5``), ``y`` their uint8 labels 0 to 9; ``X_test`` and ``y_test`` the
    10,000 test images. The four gzip IDX files are read from ``root``, by default
    ``data_home() / "fashion-mnist"``. Missing files are downloaded there from Zalando's
    published location when ``download`` is true (with a progress bar; each bounded in size
    and time, checked against its SHA-256 and moved into place whole), else a
    FileNotFoundError names them. A file that is not what it should be raises a ValueError
    naming it; a failed download says how to supply the files by hand.
    """
    if not isinstance(download, bool):
        raise TypeError(f"download must be True or False; got {shown(download)}")
    if root is not None and not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a folder path; got {shown(root)}")
    folder = data_home() / "fashion-mnist" if root is None else Path(root)
    paths = {name: folder / name for name in FASHION_MNIST_FILES}
    remove_leftovers(folder, FASHION_MNIST_FILES)
    missing = [name for name, path in paths.items() if not path.exists()]
    if missing and not download:
        raise FileNotFoundError(
            f"Fashion-MNIST: {', '.join(missing)} missing in {folder}; pass download=True or "
            f"put the files there (from {FASHION_MNIST_URL})"
        )
    for name in missing:
        size, sha256 = FASHION_MNIST_FILES[name]
        fetch(FASHION_MNIST_URL + name, paths[name], sha256, size, advice=_offline(folder))
    sets = []
    for kind, count in FASHION_MNIST_COUNTS.items():
        images_path = paths[f"{kind}-images-idx3-ubyte.gz"]
        images = read_idx(images_path, (None, 28, 28), max_values=count * 28 * 28)
        labels_path = paths[f"{kind}-labels-idx1-ubyte.gz"]
        labels = read_idx(labels_path, (None,), max_values=count)
        if labels.shape[0] != images.shape[0]:
            raise ValueError(
                f"{labels_path}: {labels.shape[0]} labels for {images.shape[0]} images"
            )
        if labels.size and labels.max() > 9:
            raise ValueError(f"{labels_path}: label {labels.max()}; expected 0 to 9")
        X = (images.reshape(images.shape[0], -1).astype(np.float32) - 127.5) / 127.5
        sets += [X, labels]
    return sets[0], sets[1], sets[2], sets[3]


def _offline(folder: Path) -> str:
    """How to give ``fashion_mnist`` its files without a download."""
    return (
        f"To work offline, get {', '.join(FASHION_MNIST_FILES)} from {FASHION_MNIST_URL} by "
        f"other means and put them in {folder}, where this call looks for them (or in another "
        "folder, passed as fashion_mnist(root=folder))"
    )
