"""The torch backend: names and devices, its optimizer updates bit for bit against NumPy's
reference, host data it takes safely, files across backends. The rest of the suite runs on
torch through the backend fixture (``nox -s "tests(torch)"``)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from helpers import load_model, seed_model, spiral
from test_optimizers import RULES, UPDATES

import xpnn
from xpnn.backends import devices
from xpnn.backends import torch as torch_backend

torch = pytest.importorskip("torch", reason="torch is not installed (the torch extra)")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("update", [*UPDATES.keys(), "SGD-plain"])
@pytest.mark.parametrize("size", [50, 300_007, (70, 30)], ids=["small", "large", "transposed"])
def test_updates_equal_the_reference_bit_for_bit(dtype, update, size):
    """Each rule's torch version on torch's CPU gives the reference's numbers exactly, step
    after step: the reference on torch always (the same operations in the same order), the
    reference on NumPy where the rule takes no square root (torch's CPU square root, MKL's,
    is not correctly rounded: 1 ulp off in about 1% of values, which NumPy's never is)."""
    be = xpnn.get_backend("torch:cpu", dtype)
    plain = update == "SGD-plain"
    arrays, settings = (1, UPDATES["SGD"][1]) if plain else UPDATES[update]
    rule, optimizer = RULES["SGD" if plain else update]
    assert optimizer.versions[be.fast_path] is rule.torch_update
    rng = np.random.default_rng(5)
    state = [rng.standard_normal(size)] + [rng.random(size) for _ in range(arrays - 1)]
    layout = (lambda a: a.T) if isinstance(size, tuple) else (lambda a: a)
    fast = [layout(be.asarray(a)) for a in state]
    on_torch = [layout(be.asarray(a)) for a in state]
    on_numpy = [layout(np.array(a, dtype=dtype)) for a in state]
    extra = (None,) if plain else ()
    numpy = xpnn.get_backend("numpy", dtype)
    scratch = {}
    for _ in range(3):
        grad = rng.standard_normal(size).astype(dtype)
        g = layout(be.asarray(grad))
        rule.torch_update(be, scratch, fast[0], g, *fast[1:], *extra, **settings)
        rule.reference_update(be, {}, on_torch[0], g, *on_torch[1:], *extra, **settings)
        rule.reference_update(numpy, {}, on_numpy[0], layout(grad), *on_numpy[1:], *extra,
                              **settings)  # fmt: skip
    for a, b, c in zip(fast, on_torch, on_numpy):
        assert type(a) is torch.Tensor
        assert torch.equal(a, b)
        if update.startswith("SGD"):
            np.testing.assert_array_equal(xpnn.to_numpy(a), c)
        else:
            rtol = 1e-6 if dtype == "float32" else 1e-14
            np.testing.assert_allclose(xpnn.to_numpy(a), c, rtol=rtol, atol=rtol)


def test_square_roots_differ_from_numpy_only_in_the_last_bit():
    """Why the rules with a square root are not bit for bit NumPy's on torch's CPU."""
    values = np.random.default_rng(0).random(100_000, dtype=np.float32) * 10
    ours = xpnn.to_numpy(torch.sqrt(torch.from_numpy(values)))
    exact = np.sqrt(values)
    np.testing.assert_array_max_ulp(ours, exact, maxulp=1)


def test_names_choose_the_device():
    default = xpnn.get_backend("torch")
    assert default.name == "torch" and default.fast_path == "torch"
    cpu = xpnn.get_backend("torch:cpu", "float64")
    assert (cpu.name, cpu.device, cpu.dtype) == ("torch:cpu", torch.device("cpu"), torch.float64)
    assert cpu.with_dtype("float32").name == "torch:cpu"
    assert xpnn.Model(backend="torch:cpu").backend is xpnn.get_backend("torch:cpu")


@pytest.mark.parametrize(
    ("name", "error", "message"),
    [
        ("torch:", ValueError, r"backend must be one of .*'torch:<device>'.*got 'torch:'"),
        ("numpy:cpu", ValueError, r"backend must be one of .*got 'numpy:cpu'"),
        ("torch:gpu", ValueError, r"torch:gpu.*'gpu' is not a torch device"),
        ("torch:mps", ValueError, r"MPS has no float64"),
    ],
)
def test_bad_names_are_refused_by_name(name, error, message):
    with pytest.raises(error, match=message):
        xpnn.get_backend(name, "float64")


def test_a_device_missing_here_is_refused_with_its_reason(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match=r'torch:cuda.*no usable .cuda. device.*"torch:cpu"'):
        xpnn.get_backend("torch:cuda", "float64")


@pytest.mark.parametrize(
    ("usable", "chosen"), [(("cuda", "mps"), "cuda"), (("mps",), "mps"), ((), "cpu")]
)
def test_torch_takes_cuda_then_mps_then_the_cpu(monkeypatch, usable, chosen):
    def unusable(_torch, kind):
        return None if kind in (*usable, "cpu") else "not here"

    monkeypatch.setattr(torch_backend, "unusable", unusable)
    monkeypatch.setattr(torch_backend, "_probed", lambda _torch, kind: kind)
    assert torch_backend._device(torch, None) == chosen


@pytest.mark.parametrize(
    ("environ", "current", "chosen"),
    [
        ({}, None, "cuda"),  # no launcher: torch's current device
        ({"MPI_LOCALRANKID": "3"}, None, "cuda:1"),  # 3 modulo 2 devices
        ({"SLURM_LOCALID": "1", "OMPI_COMM_WORLD_LOCAL_RANK": "2"}, None, "cuda:0"),
        ({"XPNN_DEVICE": "1", "MPI_LOCALRANKID": "0"}, None, "cuda:1"),
        ({"MPI_LOCALRANKID": "0"}, 1, "cuda:1"),  # torch.cuda.set_device(1) first: kept
        ({"MPI_LOCALRANKID": "1"}, 0, "cuda:1"),
    ],
    ids=["alone", "rank", "mpi-before-slurm", "xpnn-device", "set-device", "device-0-current"],
)
def test_each_rank_takes_a_cuda_device_of_its_own(monkeypatch, environ, current, chosen):
    """``backend="torch"`` on several CUDA devices takes this process's as CuPy does
    (``devices.pick``), before anything runs on a device: no rank probes another's."""
    probed = []

    def unusable(_torch, where):
        probed.append(where)
        return None

    def current_device():
        assert current is not None, "asked for the current device before CUDA started"
        return current

    monkeypatch.setattr(torch_backend, "unusable", unusable)
    monkeypatch.setattr(torch_backend, "_probed", lambda _torch, where: where)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: current is not None)
    monkeypatch.setattr(torch.cuda, "current_device", current_device)
    for name in (*devices.LOCAL_RANK_VARIABLES, "XPNN_DEVICE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert torch_backend._device(torch, None) == chosen
    assert probed == [chosen]


@pytest.mark.parametrize("wrong", ["2", "-1", "cuda:1"])
def test_a_bad_xpnn_device_is_refused_on_torch(monkeypatch, wrong):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch_backend, "unusable", lambda *_: pytest.fail("probed a device"))
    monkeypatch.setenv("XPNN_DEVICE", wrong)
    with pytest.raises(
        ValueError, match=rf"XPNN_DEVICE must be a device number in \[0, 2\).*'{wrong}'"
    ):
        torch_backend._device(torch, None)


def test_one_device_or_none_leaves_the_choice_to_torch(monkeypatch):
    monkeypatch.setenv("MPI_LOCALRANKID", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    assert torch_backend._this_process(torch, "cuda") == "cuda:0"  # 1 modulo 1
    assert torch_backend._this_process(torch, "mps") == "mps"  # one device: nothing to choose
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert torch_backend._this_process(torch, "cuda") == "cuda"  # unusable: the probe says why


def test_auto_never_picks_torch(monkeypatch, caplog):
    """torch is installed here, yet "auto" picks CuPy or NumPy as before."""
    monkeypatch.setattr(torch_backend, "unusable", lambda _torch, kind: None)
    with caplog.at_level(logging.INFO, logger="xpnn"):
        assert xpnn.get_backend("auto").name in ("numpy", "cupy")


def test_host_data_is_copied_whatever_its_layout():
    """Reversed, read-only and float64 arrays arrive as float32 tensors that do not share the
    caller's memory (torch refuses negative strides and warns on read-only arrays)."""
    be = xpnn.get_backend("torch:cpu")
    data = np.arange(6.0).reshape(2, 3)
    data.flags.writeable = False
    for given in (data, data[:, ::-1], data.T):
        tensor = be.asarray(given)
        assert tensor.dtype == torch.float32 and tensor.is_contiguous()
        np.testing.assert_array_equal(xpnn.to_numpy(tensor), given.astype(np.float32))
    writable = np.ones(3, dtype=np.float32)
    tensor = be.asarray(writable)
    writable[0] = 5
    assert xpnn.to_numpy(tensor).tolist() == [1, 1, 1]


def test_tensors_with_autograd_are_taken_and_come_back_to_numpy():
    tensor = torch.ones(2, 3, requires_grad=True)
    assert xpnn.to_numpy(tensor * 2).tolist() == [[2.0] * 3] * 2
    model = seed_model("torch:cpu")
    X, y = spiral(10, 3)
    expected = xpnn.to_numpy(model.predict(X))
    tracked = torch.tensor(X, requires_grad=True)
    np.testing.assert_array_equal(xpnn.to_numpy(model.predict(tracked)), expected)
    model.train(tracked, torch.tensor(y), epochs=2, verbose=False)  # autograd left out


def test_foreign_arrays_are_refused_by_argument():
    xps = pytest.importorskip("array_api_strict")
    model = seed_model("torch:cpu")
    X = xps.asarray(np.zeros((3, 2), dtype=np.float32), device=xps.Device("device1"))
    with pytest.raises(TypeError, match=r"X is a array_api_strict array on device"):
        model.predict(X)


@pytest.mark.parametrize(("saved_on", "loaded_on"), [("numpy", "torch"), ("torch", "numpy")])
def test_a_model_trained_on_one_loads_on_the_other(tmp_path, saved_on, loaded_on):
    """Saved with its optimizer state on one backend, a model loads on the other, predicts
    alike and trains on as the original does."""
    X, y = spiral(50, 3)
    model = seed_model(saved_on)
    model.train(X, y, epochs=3, batch_size=32, verbose=False)
    model.save(tmp_path / "m.safetensors")
    loaded = load_model(tmp_path / "m.safetensors", backend=loaded_on)
    assert loaded.backend.name == loaded_on
    np.testing.assert_allclose(
        xpnn.to_numpy(loaded.predict(X)), xpnn.to_numpy(model.predict(X)), rtol=1e-5, atol=1e-6
    )
    for m in (model, loaded):
        m.train(X, y, epochs=2, batch_size=32, shuffle=False, verbose=False)
    np.testing.assert_allclose(
        xpnn.to_numpy(loaded.predict(X)), xpnn.to_numpy(model.predict(X)), rtol=1e-4, atol=1e-5
    )


def test_dropout_on_the_cpu_draws_as_numpy_does():
    """On torch's CPU the masks come from NumPy's generator: the numpy backend's draws, and a
    state a checkpoint saves exactly."""
    be, numpy = xpnn.get_backend("torch:cpu"), xpnn.get_backend("numpy")
    draws = be.random(be.random_generator(7), (4, 3))
    assert type(draws) is torch.Tensor and draws.device == be.device
    assert draws.dtype == torch.float32
    expected = numpy.random(numpy.random_generator(7), (4, 3))
    np.testing.assert_array_equal(xpnn.to_numpy(draws), expected)


def test_estimators_take_a_torch_device_by_name():
    from xpnn.sklearn import MLPClassifier

    X, y = spiral(20, 3)
    clf = MLPClassifier((8,), max_iter=2, random_state=0, backend="torch:cpu").fit(X, y)
    assert clf.model_.backend.name == "torch:cpu"
    with pytest.raises(ValueError, match=r"backend must be one of .*got 'torch:'"):
        MLPClassifier(backend="torch:").fit(X, y)


def test_reports_on_a_device_without_float64(monkeypatch):
    """Apple's MPS has no float64, in which a report reads its figures: there the namespace
    casts to float64 on the host, and passes everything else through. Run here on the CPU with
    that namespace in place."""
    be = xpnn.get_backend("torch:cpu")
    host = torch_backend.HostFloat64(be.xp)

    class OnDevice:  # a stand-in tensor: casting it to float64 where it lives would fail
        def cpu(self):
            return torch.ones(2)

    assert host.astype(OnDevice(), torch.float64).dtype == torch.float64
    assert host.astype(torch.ones(2), torch.int64).dtype == torch.int64
    monkeypatch.setattr(be, "xp", host)
    X, y = spiral(30, 3)
    model = seed_model(be)
    history = model.train(X, y, epochs=3, batch_size=32, validation_data=(X, y), verbose=False)
    assert len(history["loss"]) == 3 and np.all(np.isfinite(history["val_loss"]))
