"""xpnn.datasets.fashion_mnist: IDX files read and checked, downloaded from a local server."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import os
import signal
import struct
import threading
import tracemalloc
import zlib

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
    assert y.flags.writeable and y_test.flags.writeable


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
        (header(0x08, 2, 28, 28) + bytes(784), "1568 bytes of values, but only 784 follow"),
        (header(0x08, 2, 28, 28) + bytes(3 * 784), "1568 bytes of values, but more follow"),
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
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
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
    assert not [p for p in target.iterdir() if p.name.startswith(".")]  # no temporary left


# IDX files that once made the reader allocate, block or fail without naming the file.


def gzip_of_zeros(path, head: bytes, zeros: int) -> None:
    """A gzip file of ``head`` then ``zeros`` zero bytes, compressed as they are made."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    with open(path, "wb") as file:
        file.write(compressor.compress(head))
        for _ in range(zeros >> 20):
            file.write(compressor.compress(bytes(1 << 20)))
        file.write(compressor.compress(bytes(zeros & ((1 << 20) - 1))))
        file.write(compressor.flush())


def test_a_small_file_of_many_bytes_is_refused_without_holding_them(tmp_path):
    """A 32 KB file holding a (2, 28, 28) header then 32 MB: no more than the header's 1568
    bytes are decompressed before it is refused (it once read all 32 MB first)."""
    path = tmp_path / "bomb.gz"
    gzip_of_zeros(path, header(0x08, 2, 28, 28), 32 << 20)
    assert path.stat().st_size < 64 << 10
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="1568 bytes of values, but") as error:
            read_idx(path, (None, 28, 28))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(path) in str(error.value)
    assert peak < 1 << 20  # a few decompression buffers (80 KB measured), not the 32 MB


@pytest.mark.parametrize(
    ("dims", "message"),
    [
        ((65536, 65536, 65536, 65536), "18446744073709551616 bytes of values, more than a gzip"),
        ((0, 2**32 - 1, 2**32 - 1, 2**32 - 1), "cannot be held in memory"),
        ((2**32 - 1, 2**32 - 1, 2**32 - 1, 2), "more than a gzip file of"),
        ((100_000, 100, 100, 1), "1000000000 bytes of values, more than a gzip file of"),
    ],
    ids=["product-wraps-to-zero", "zero-times-huge", "product-beyond-int64", "claims-1GB"],
)
def test_dimensions_beyond_what_the_file_holds_are_refused_by_name(tmp_path, dims, message):
    """A product of dimensions that overflows int64 (once an unrelated reshape error) or that
    no gzip file of this size can hold is refused from the header, naming the file."""
    path = tmp_path / "dims.gz"
    raw(path, header(0x08, *dims))
    with pytest.raises(ValueError, match=message) as error:
        read_idx(path, (None,) * len(dims))
    assert str(path) in str(error.value)


def test_max_values_bounds_what_is_decompressed(tmp_path):
    path = tmp_path / "labels.gz"
    write_idx(path, np.arange(6, dtype=np.uint8))
    assert read_idx(path, (None,), max_values=6).tolist() == [0, 1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="6 values; expected at most 5") as error:
        read_idx(path, (None,), max_values=5)
    assert str(path) in str(error.value)


def test_a_fifo_is_refused_unopened(tmp_path):
    """A FIFO in place of a data file once blocked the reader forever.

    A thread waits to write to it: should the reader open the FIFO, the thread writes a few
    bytes and closes it, so the reader fails (on "not gzip") rather than hanging; if it is
    refused unopened, the test opens it to release the thread.
    """
    fifo = tmp_path / "train-labels-idx1-ubyte.gz"
    os.mkfifo(fifo)

    def writer():
        with open(fifo, "wb") as end:  # waits for a reader
            end.write(b"not gzip")

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        with pytest.raises(ValueError, match="it is a FIFO") as error:
            read_idx(fifo, (None,))
        assert str(fifo) in str(error.value)
    finally:
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # releases the writer
        thread.join(timeout=30)
        os.close(reader)
    assert not thread.is_alive()


def test_a_directory_or_device_is_refused(tmp_path):
    with pytest.raises(ValueError, match="it is a directory, not a regular file"):
        read_idx(tmp_path, (None,))
    with pytest.raises(ValueError, match="it is a character device"):
        read_idx("/dev/zero", (None,))
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "absent.gz", (None,))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "does not start with two zero bytes"),
        (gzip.compress(header(0x08, 3) + bytes(3)) + b"junk", "not a readable gzip"),
        (gzip.compress(header(0x08, 3) + bytes(3))[:-5], "not a readable gzip"),
        (gzip.compress(header(0x08, 2)) + gzip.compress(bytes(2)), None),
    ],
    ids=["empty", "trailing-junk", "truncated-trailer", "two-members"],
)
def test_gzip_edge_cases(tmp_path, data, message):
    path = tmp_path / "labels.gz"
    path.write_bytes(data)
    if message is None:
        assert read_idx(path, (None,)).tolist() == [0, 0]
        return
    with pytest.raises(ValueError, match=message) as error:
        read_idx(path, (None,))
    assert str(path) in str(error.value)


def test_a_failed_write_idx_keeps_the_old_file(tmp_path):
    """A write cut short (here a file-size limit, as a full disk would) once left a truncated
    file in place of the old one; now the old file stays whole and no temporary is left."""
    resource = pytest.importorskip("resource")
    path = tmp_path / "labels.gz"
    write_idx(path, np.arange(10, dtype=np.uint8))
    before = path.read_bytes()
    noise = np.random.default_rng(0).integers(0, 256, 200_000, dtype=np.uint8)
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, limits[1]))
    try:
        with pytest.raises(OSError, match="File too large"):
            write_idx(path, noise)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, handler)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["labels.gz"]
    np.testing.assert_array_equal(read_idx(path, (None,)), np.arange(10))


def test_write_idx_refuses_a_dimension_idx_cannot_hold(tmp_path):
    path = tmp_path / "x.gz"
    with pytest.raises(ValueError, match=r"x\.gz as IDX: .* each must be below 2\*\*32"):
        write_idx(path, np.zeros((2**32, 0), np.uint8))
    assert not path.exists()
    write_idx(path, np.zeros((2**32 - 1, 0), np.uint8))  # the largest it can
    assert read_idx(path, (None, 0)).shape == (2**32 - 1, 0)


def test_write_idx_is_reproducible_and_refuses_a_fifo(tmp_path):
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    write_idx(tmp_path / "a.gz", array)
    write_idx(tmp_path / "b.gz", array)
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()
    os.mkfifo(tmp_path / "fifo.gz")
    with pytest.raises(ValueError, match="FIFO"):
        write_idx(tmp_path / "fifo.gz", array)
