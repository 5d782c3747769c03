"""xpnn.datasets.fashion_mnist: IDX files read and checked, downloaded from a local server."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import struct
import threading

import numpy as np
import pytest

from xpnn import datasets
from xpnn.idx import read_idx, write_idx

NAMES = list(datasets.FASHION_MNIST_FILES)


def write_set(folder, train: int = 12, test: int = 5, seed: int = 0) -> dict:
    """The four files with random images and labels; the arrays written, by file name."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": rng.integers(0, 10, train, dtype=np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, test, dtype=np.uint8),
    }
    arrays["train-images-idx3-ubyte.gz"][0, 0, :2] = (0, 255)  # both ends of the scale
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        write_idx(folder / name, array)
    return arrays


def test_reads_the_book_arrays(tmp_path):
    arrays = write_set(tmp_path)
    X, y, X_test, y_test = datasets.fashion_mnist(tmp_path, download=False)
    assert X.dtype == X_test.dtype == np.float32
    assert X.shape == (12, 784) and X_test.shape == (5, 784)
    assert y.dtype == np.uint8 and y.shape == (12,)
    images = arrays["train-images-idx3-ubyte.gz"]
    np.testing.assert_array_equal(X, (images.reshape(12, 784).astype(np.float32) - 127.5) / 127.5)
    assert X[0, 0] == -1.0 and X[0, 1] == 1.0
    np.testing.assert_array_equal(y, arrays["train-labels-idx1-ubyte.gz"])
    np.testing.assert_array_equal(y_test, arrays["t10k-labels-idx1-ubyte.gz"])


def test_the_cache_folder_and_its_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("XPNN_DATA", str(tmp_path / "cache"))
    assert datasets.data_home() == tmp_path / "cache"
    write_set(tmp_path / "cache" / "fashion-mnist")
    assert datasets.fashion_mnist(download=False)[0].shape == (12, 784)
    monkeypatch.delenv("XPNN_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert datasets.data_home() == tmp_path / "xdg" / "xpnn"


def test_missing_files_without_download(tmp_path):
    write_set(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"t10k-labels-idx1-ubyte\.gz missing"):
        datasets.fashion_mnist(tmp_path, download=False)


def raw(path, data: bytes) -> None:
    with gzip.open(path, "wb") as file:
        file.write(data)


def header(kind: int, *dims: int) -> bytes:
    return bytes([0, 0, kind, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\1\0\x08\x03", "does not start with two zero bytes"),
        (header(0x0D, 2, 28, 28) + bytes(2 * 784 * 4), "type code 0x0d"),
        (header(0x08, 2, 784) + bytes(2 * 784), "2 dimensions; expected 3"),
        (header(0x08, 2, 28, 27) + bytes(2 * 28 * 27), r"expected \(any, 28, 28\)"),
        (header(0x08, 2, 28, 28) + bytes(784), "1568 bytes of values, but 784 follow"),
        (header(0x08, 2, 28, 28) + bytes(3 * 784), "but 2352 follow"),
        (b"\0\0\x08\x03\0\0", "header is cut short"),
    ],
    ids=["magic", "type", "ndim", "dims", "short", "long", "header"],
)
def test_bad_idx_files_are_refused_by_name(tmp_path, data, message):
    path = tmp_path / "images.gz"
    raw(path, data)
    with pytest.raises(ValueError, match=message) as error:
        read_idx(path, (None, 28, 28))
    assert str(path) in str(error.value)


def test_write_idx_takes_bytes_only(tmp_path):
    with pytest.raises(TypeError, match="uint8"):
        write_idx(tmp_path / "x.gz", np.zeros((2, 2), np.int64))
    write_idx(tmp_path / "x.gz", np.arange(6, dtype=np.uint8).reshape(2, 3))
    np.testing.assert_array_equal(read_idx(tmp_path / "x.gz", (2, None)), [[0, 1, 2], [3, 4, 5]])


def test_not_gzip_and_mismatched_sets(tmp_path):
    write_set(tmp_path)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"plain bytes, not gzip")
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte\.gz: not a readable gzip"):
        datasets.fashion_mnist(tmp_path, download=False)
    write_set(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(11, np.uint8))
    with pytest.raises(ValueError, match="11 labels for 12 images"):
        datasets.fashion_mnist(tmp_path, download=False)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.full(12, 10, np.uint8))
    with pytest.raises(ValueError, match="label 10; expected 0 to 9"):
        datasets.fashion_mnist(tmp_path, download=False)


@pytest.fixture
def server(tmp_path):
    """A local HTTP server over a folder of the four files: (its URL, the folder, requests)."""
    folder = tmp_path / "served"
    write_set(folder, seed=1)
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            requests.append(self.path)

    handler = functools.partial(Handler, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/", folder, requests
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def served_sums(folder) -> dict:
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in NAMES}


def test_downloads_what_is_missing_and_checks_it(tmp_path, server, monkeypatch, capsys):
    url, folder, requests = server
    monkeypatch.setattr(datasets, "FASHION_MNIST_URL", url)
    monkeypatch.setattr(datasets, "FASHION_MNIST_FILES", served_sums(folder))
    target = tmp_path / "data"
    X, _, X_test, _ = datasets.fashion_mnist(target)
    assert sorted(requests) == sorted(f"/{name}" for name in NAMES)
    for name in NAMES:
        assert (target / name).read_bytes() == (folder / name).read_bytes()
    assert X.shape == (12, 784) and X_test.shape == (5, 784)
    assert "train-images-idx3-ubyte.gz" in capsys.readouterr().err  # the progress bar
    assert sorted(p.name for p in target.iterdir()) == sorted(NAMES)  # no temporary left
    # Present files are not fetched again; a missing one alone is.
    (target / "t10k-labels-idx1-ubyte.gz").unlink()
    requests.clear()
    datasets.fashion_mnist(target)
    assert requests == ["/t10k-labels-idx1-ubyte.gz"]


def test_a_bad_checksum_writes_nothing(tmp_path, server, monkeypatch):
    url, folder, _ = server
    sums = served_sums(folder)
    sums["train-labels-idx1-ubyte.gz"] = "0" * 64
    monkeypatch.setattr(datasets, "FASHION_MNIST_URL", url)
    monkeypatch.setattr(datasets, "FASHION_MNIST_FILES", sums)
    target = tmp_path / "data"
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte\.gz: the download's SHA-256"):
        datasets.fashion_mnist(target)
    assert not (target / "train-labels-idx1-ubyte.gz").exists()
    assert not [p for p in target.iterdir() if p.name.endswith(".tmp")]
