"""xpnn.datasets.fashion_mnist: IDX files read and checked, downloaded from a local server."""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import http.server
import os
import signal
import socket
import struct
import threading
import time
import tracemalloc
import zlib

import numpy as np
import pytest

from xpnn import datasets, download
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
    monkeypatch.setenv("XPNN_DATA", "   ")  # blank: as if unset, not a folder named "   "
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
    """Each served file's size and SHA-256, as FASHION_MNIST_FILES holds them."""
    return {
        name: (len(data := (folder / name).read_bytes()), hashlib.sha256(data).hexdigest())
        for name in NAMES
    }


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
    sums["train-labels-idx1-ubyte.gz"] = (sums["train-labels-idx1-ubyte.gz"][0], "0" * 64)
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
        ((0, 2**32 - 1, 2**32 - 1, 2**32 - 1), "NumPy cannot make an array of dimensions"),
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


def test_fashion_mnist_refuses_more_images_than_the_data_set_has(tmp_path, monkeypatch):
    write_set(tmp_path, train=12, test=5)
    monkeypatch.setattr(datasets, "FASHION_MNIST_COUNTS", {"train": 11, "t10k": 5})
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte\.gz: .* at most 8624"):
        datasets.fashion_mnist(tmp_path, download=False)


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


@pytest.mark.parametrize(
    "array",
    [np.array(7, np.uint8), np.zeros((0, 3), np.uint8), np.arange(24, dtype=np.uint8)[::2]],
    ids=["0-d", "empty", "strided"],
)
def test_write_idx_round_trips_any_shape(tmp_path, array):
    """A 0-d array is written with no dimensions (it was once written as shape (1,))."""
    write_idx(tmp_path / "a.gz", array)
    back = read_idx(tmp_path / "a.gz", (None,) * array.ndim)
    assert back.shape == array.shape
    np.testing.assert_array_equal(back, array)


def test_write_idx_is_reproducible_and_refuses_a_fifo(tmp_path):
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    write_idx(tmp_path / "a.gz", array)
    write_idx(tmp_path / "b.gz", array)
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()
    os.mkfifo(tmp_path / "fifo.gz")
    with pytest.raises(ValueError, match="FIFO"):
        write_idx(tmp_path / "fifo.gz", array)


# Downloads from servers that misbehave.


@contextlib.contextmanager
def serving(respond):
    """A local HTTP server whose every GET is ``respond(handler)``; yields its URL. A handler
    that waits should wait on the event it is given, set when the test is done."""
    done = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            with contextlib.suppress(OSError):
                respond(self, done)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/file.gz"
    finally:
        done.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=30)


def only_hidden(folder) -> list:
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


def send(handler, body: bytes, length: int | None = None) -> None:
    handler.send_response(200)
    if length is not None:
        handler.send_header("Content-Length", str(length))
    handler.end_headers()
    handler.wfile.write(body)
    handler.wfile.flush()


def test_a_download_stops_at_the_expected_size(tmp_path):
    """A server that sends 4 MB, no length given, for a 1000-byte file: refused once it passes
    1000 bytes (it was once written out whole, 300 MB for a 26 MB file, before the checksum)."""
    path = tmp_path / "data" / "file.gz"

    def flood(handler, done):
        send(handler, b"")
        for _ in range(64):
            handler.wfile.write(bytes(1 << 16))

    with serving(flood) as url, pytest.raises(ValueError, match="sent more than 1000 bytes") as e:
        download.fetch(url, path, "0" * 64, 1000)
    assert url in str(e.value) and str(path) in str(e.value)
    assert not path.exists() and not only_hidden(path.parent)


def test_a_download_offering_another_size_is_refused_before_its_body(tmp_path):
    path = tmp_path / "file.gz"

    def huge(handler, done):
        send(handler, b"x", length=10**9)
        done.wait(30)  # never sends the rest

    with serving(huge) as url, pytest.raises(ValueError, match="offers 1000000000 bytes, not 1000"):
        download.fetch(url, path, "0" * 64, 1000)
    assert not path.exists() and not only_hidden(tmp_path)


def trickle(handler, done):
    """One byte of a 1000-byte file, then nothing until the test is done."""
    send(handler, b"x", length=1000)
    done.wait(30)


def test_a_trickling_server_is_abandoned_at_the_deadline(tmp_path):
    """The server never finishes (a byte, then silence, as one sending a byte now and then
    would look): the deadline ends the download, however long the per-read timeout."""
    path = tmp_path / "file.gz"
    with serving(trickle) as url, pytest.raises(TimeoutError, match="not complete after") as e:
        download.fetch(url, path, "0" * 64, 1000, timeout=600, deadline=0.05)
    assert "(1 of 1000 bytes)" in str(e.value) or "(0 of 1000 bytes)" in str(e.value)
    assert url in str(e.value) and str(path) in str(e.value)
    assert not path.exists() and not only_hidden(tmp_path)


def test_headers_trickled_forever_are_abandoned_at_the_deadline(tmp_path):
    """A byte of headers every 10 ms, never ending: no read waits as long as the per-read
    timeout, yet the deadline ends the download."""

    def slow_headers(handler, done):
        handler.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        while not done.wait(0.01):
            handler.wfile.write(b"a")
            handler.wfile.flush()

    with (
        serving(slow_headers) as url,
        pytest.raises(TimeoutError, match=r"not complete after 0\.2 s"),
    ):
        download.fetch(url, tmp_path / "file.gz", "0" * 64, 1000, deadline=0.2)
    assert not only_hidden(tmp_path)


@pytest.mark.parametrize("argument", ["timeout", "deadline"])
@pytest.mark.parametrize("value", [0, -1.0, float("nan")])
def test_timeouts_must_be_positive(tmp_path, argument, value):
    with pytest.raises(ValueError, match=f"{argument} must be a positive number of seconds"):
        download.fetch("http://127.0.0.1:9/", tmp_path / "f.gz", "0" * 64, 10, **{argument: value})
    assert not list(tmp_path.iterdir())


def test_a_stalled_server_times_out_per_read(tmp_path):
    path = tmp_path / "file.gz"
    with serving(trickle) as url, pytest.raises(TimeoutError, match=r"no data for 0\.05 s"):
        download.fetch(url, path, "0" * 64, 1000, timeout=0.05, deadline=600)
    assert not only_hidden(tmp_path)


def test_fashion_mnist_downloads_have_a_default_deadline(tmp_path, monkeypatch):
    """fashion_mnist's downloads are bounded: by DEADLINE_BASE plus a second per SLOWEST_RATE
    bytes (made tiny here), and the error says how to supply the files instead."""
    monkeypatch.setattr(download, "DEADLINE_BASE", 0.05)
    monkeypatch.setattr(download, "SLOWEST_RATE", 1e12)
    monkeypatch.setattr(datasets, "FASHION_MNIST_FILES", dict.fromkeys(NAMES, (1000, "0" * 64)))
    with serving(trickle) as url:
        monkeypatch.setattr(datasets, "FASHION_MNIST_URL", url.removesuffix("file.gz"))
        with pytest.raises(TimeoutError, match=r"not complete after 0\.05 s") as error:
            datasets.fashion_mnist(tmp_path)
    assert "To work offline" in str(error.value)


@pytest.mark.parametrize(("status", "text"), [(404, "Not Found"), (500, "Internal Server Error")])
def test_http_errors_name_the_url_the_file_and_what_to_do_offline(tmp_path, status, text):
    def fail(handler, done):
        handler.send_error(status)

    folder = tmp_path / "data"
    with serving(fail) as url, pytest.MonkeyPatch.context() as patch:
        base = url.removesuffix("file.gz")
        patch.setattr(datasets, "FASHION_MNIST_URL", base)
        with pytest.raises(OSError, match=f"HTTP error {status}: {text}") as error:
            datasets.fashion_mnist(folder)
    message = str(error.value)
    first = NAMES[0]
    assert f"{base}{first}" in message  # the URL
    assert f"nothing was written to {folder / first}" in message  # the file
    assert f"put them in {folder}" in message  # the folder, the names, how to pass them
    assert all(name in message for name in NAMES)
    assert "fashion_mnist(root=" in message
    assert not only_hidden(folder)


def test_no_connection_names_the_url(tmp_path):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, not listening: the connection is refused
        url = f"http://127.0.0.1:{port}/file.gz"
        with pytest.raises(OSError, match=r"cannot download it .*refused") as error:
            download.fetch(url, tmp_path / "file.gz", "0" * 64, 10)
    assert url in str(error.value) and not only_hidden(tmp_path)


def test_a_short_download_is_refused(tmp_path):
    def short(handler, done):
        send(handler, b"abc")  # no length; the connection closes after three bytes

    with serving(short) as url, pytest.raises(ValueError, match="sent only 3 of 1000 bytes"):
        download.fetch(url, tmp_path / "file.gz", "0" * 64, 1000)


# Temporaries that killed downloads left behind.

LEFTOVER = ".train-labels-idx1-ubyte.gz.0123456789ab.download"
HOUR_AGO = time.time() - 2 * download.STALE_AFTER


def leftover(folder, name: str = LEFTOVER, old: bool = True):
    path = folder / name
    path.write_bytes(b"half a download")
    if old:
        os.utime(path, (HOUR_AGO, HOUR_AGO))
    return path


def test_a_leftover_download_is_removed(tmp_path):
    """A download killed outright leaves its temporary; the next call removes it (it once
    stayed for good)."""
    write_set(tmp_path)
    stale = leftover(tmp_path)
    datasets.fashion_mnist(tmp_path, download=False)
    assert not stale.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(NAMES)


def test_only_abandoned_temporaries_of_ours_are_removed(tmp_path):
    """Kept: one another process is writing (locked), a recent one (perhaps just created,
    not yet locked), other names, a symlink or folder of the pattern, another suffix."""
    fcntl = pytest.importorskip("fcntl")
    write_set(tmp_path)
    stale = leftover(tmp_path)
    locked = leftover(tmp_path, ".train-images-idx3-ubyte.gz.aaaaaaaaaaaa.download")
    recent = leftover(tmp_path, ".t10k-images-idx3-ubyte.gz.bbbbbbbbbbbb.download", old=False)
    kept = [
        locked,
        recent,
        leftover(tmp_path, ".other.gz.0123456789ab.download"),
        leftover(tmp_path, ".train-labels-idx1-ubyte.gz.0123456789a.download"),
        leftover(tmp_path, ".train-labels-idx1-ubyte.gz.0123456789ab.tmp"),
        leftover(tmp_path, "notes.txt"),
    ]
    (tmp_path / "outside").mkdir()
    outside = leftover(tmp_path / "outside", "precious")
    link = tmp_path / ".t10k-labels-idx1-ubyte.gz.cccccccccccc.download"
    link.symlink_to(outside)
    os.utime(link, (HOUR_AGO, HOUR_AGO), follow_symlinks=False)
    folder = tmp_path / ".t10k-labels-idx1-ubyte.gz.dddddddddddd.download"
    folder.mkdir()
    os.utime(folder, (HOUR_AGO, HOUR_AGO))
    with open(locked, "rb") as writer:
        fcntl.flock(writer.fileno(), fcntl.LOCK_EX)  # as a running download holds it
        removed = download.remove_leftovers(tmp_path, NAMES)
    assert removed == [stale]
    assert all(path.exists() for path in [*kept, link, folder, outside])
    assert outside.read_bytes() == b"half a download"


def test_a_running_download_holds_its_temporary_locked(tmp_path):
    """While a download runs, its temporary is locked: another process's cleanup keeps it even
    when it looks old (checked from the server, while the client waits for its answer)."""
    fcntl = pytest.importorskip("fcntl")
    seen = {}

    def inspect(handler, done):
        (temporary,) = only_hidden(tmp_path)
        os.utime(tmp_path / temporary, (HOUR_AGO, HOUR_AGO))
        with open(tmp_path / temporary, "rb") as other:
            try:
                fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                seen["locked"] = False
            except BlockingIOError:
                seen["locked"] = True
        seen["removed"] = download.remove_leftovers(tmp_path, ["file.gz"])
        handler.send_error(404)

    with serving(inspect) as url, pytest.raises(OSError, match="HTTP error 404"):
        download.fetch(url, tmp_path / "file.gz", "0" * 64, 10, deadline=600)
    assert seen == {"locked": True, "removed": []}
    assert not only_hidden(tmp_path)


@pytest.mark.parametrize(
    ("settings", "message"),
    [({"download": "no"}, "download must be True or False"), ({"root": 5}, "root must be a")],
)
def test_arguments_of_another_type_are_refused_before_any_file_or_request(
    tmp_path, monkeypatch, settings, message
):
    monkeypatch.setenv("XPNN_DATA", str(tmp_path))  # "no" is truthy: it would download here
    with pytest.raises(TypeError, match=message):
        datasets.fashion_mnist(**settings)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("shape", [6, [None, 28, 28], (None, 28.0, 28), (-1,)])
def test_read_idx_names_a_shape_that_is_not_one(tmp_path, shape):
    with pytest.raises(TypeError, match="shape must be a tuple of sizes"):
        read_idx(tmp_path / "any.gz", shape)
