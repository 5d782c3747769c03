"""The worked examples of the pages "Write your own layer" and "Write your own optimizer"
(examples/custom_layer.py, examples/custom_optimizer.py), run on every backend: their checks
pass (and fail for a wrong part), the model learns, and the loaded model goes on exactly as
the saved one."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import xpnn

ROOT = Path(__file__).resolve().parent.parent
#: Short runs: the spiral after 20 epochs is at 0.57 to 0.70 here (chance is 1/3).
EPOCHS, LEARNED = 20, 0.5


def example(name: str) -> ModuleType:
    """An example script as a module (run again: its class takes the place of the one before,
    as a notebook cell run twice does)."""
    spec = importlib.util.spec_from_file_location(f"xpnn_example_{name}", ROOT / "examples" / name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def layer_example():
    """examples/custom_layer.py, its LayerNorm registered for the test and withdrawn after."""
    module = example("custom_layer.py")
    yield module
    xpnn.unregister(module.LayerNorm)


@pytest.fixture
def optimizer_example():
    """examples/custom_optimizer.py, its Nesterov registered for the test and withdrawn after."""
    module = example("custom_optimizer.py")
    yield module
    xpnn.unregister(module.Nesterov)


def test_custom_layer_example(backend, layer_example, tmp_path):
    result = layer_example.run(backend, EPOCHS, tmp_path, print_every=EPOCHS)
    assert result["accuracy"] > LEARNED
    assert result["same_predictions"]
    loaded = result["loaded"]
    layer = loaded.layers[1]
    assert type(layer) is layer_example.LayerNorm
    assert layer.config() == {"n_features": 64, "epsilon": 1e-5}
    assert loaded.backend.name == xpnn.get_backend(backend).name
    # gamma and beta were trained (backward wrote into the model's gradient buffer)
    assert not np.array_equal(xpnn.to_numpy(layer.gamma), np.ones((1, 64)))
    assert np.any(xpnn.to_numpy(layer.beta) != 0)


def test_custom_layer_check_fails_for_a_wrong_backward(backend, layer_example, monkeypatch):
    class Uncentred(layer_example.LayerNorm):
        """The gradient without the term through the mean."""

        def backward(self, dvalues, *, need_dinputs=True):
            super().backward(dvalues, need_dinputs=need_dinputs)
            n = self.n_features
            dnormalized = self._gradient(dvalues) * self.gamma
            xp = self.backend.xp
            self.dinputs += (self.inv_std / n) * xp.sum(dnormalized, axis=1, keepdims=True)
            return self.dinputs

    monkeypatch.setattr(layer_example, "LayerNorm", Uncentred)
    with pytest.raises(xpnn.GradientCheckError, match=r"inputs \(dinputs\)"):
        layer_example.check(backend)


def test_custom_optimizer_example(backend, optimizer_example, tmp_path):
    result = optimizer_example.run(backend, EPOCHS, tmp_path, print_every=EPOCHS)
    assert result["accuracy"] > LEARNED
    assert result["difference"] < 1e-12
    assert result["same_predictions"] and result["same_after_training"]
    optimizer = result["loaded"].optimizer
    assert type(optimizer) is optimizer_example.Nesterov
    assert optimizer.config() == {"learning_rate": 1.0, "decay": 1e-3, "momentum": 0.9}
    assert optimizer.iterations == (EPOCHS + 1) * 24  # 3000 samples in batches of 128


def test_custom_optimizer_check_fails_for_plain_momentum(backend, optimizer_example, monkeypatch):
    """The check tells Nesterov's rule from SGD's momentum, whichever version runs."""

    def momentum(backend, scratch, param, grad, momentums, *, learning_rate, momentum):
        momentums[...] = momentum * momentums - learning_rate * grad
        param += momentums

    monkeypatch.setattr(optimizer_example, "reference_update", momentum)
    monkeypatch.setattr(optimizer_example.Nesterov, "versions", {})
    with pytest.raises(AssertionError, match="Not equal to tolerance"):
        optimizer_example.check(backend)


def test_the_versions_compute_the_reference(backend, optimizer_example):
    """The NumPy and CUDA versions (the kernel body on the CuPy stand-in where it runs) give
    the reference's numbers, step after step."""
    be = xpnn.get_backend(backend, "float32")
    version = optimizer_example.Nesterov().version(be, optimizer_example.reference_update)
    expected = {"numpy": "numpy_update", "numba": "numpy_update", "cupy": "cupy_update"}
    assert version.__name__ == expected.get(be.fast_path, "reference_update")
    rng = np.random.default_rng(1)
    start = rng.standard_normal((2, 37, 5)).astype(np.float32)
    fast = [be.asarray(a.copy()) for a in start]
    reference = [be.asarray(a.copy()) for a in start]
    scratch: dict = {}
    for _ in range(3):
        grad = be.asarray(rng.standard_normal((37, 5)).astype(np.float32))
        settings = {"learning_rate": 0.05, "momentum": 0.9}
        version(be, scratch, fast[0], grad, fast[1], **settings)
        optimizer_example.reference_update(be, {}, reference[0], grad, reference[1], **settings)
    for a, b in zip(fast, reference, strict=True):
        np.testing.assert_array_equal(xpnn.to_numpy(a), xpnn.to_numpy(b))


@pytest.mark.parametrize("script", ["custom_layer.py", "custom_optimizer.py"])
def test_the_script_runs_as_the_docs_say(script, tmp_path):
    """As a user runs it: a few epochs on NumPy, the model file written into --out."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    shown = subprocess.run(
        [sys.executable, f"examples/{script}", "--epochs", "3", "--out", str(tmp_path)],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "predicts the same: True" in shown.stdout
    assert (tmp_path / script.replace(".py", ".xpnn")).stat().st_size > 0


def test_nesterov_takes_torchs_steps_at_a_constant_rate(optimizer_example):
    """What the page says of the rule: torch.optim.SGD(nesterov=True)'s steps, in float64."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    start, grads = rng.standard_normal((4, 2)), rng.standard_normal((5, 4, 2))
    be = xpnn.get_backend("numpy", "float64")
    layer = xpnn.Dense(4, 2, backend=be)
    layer.weights, layer.biases = be.asarray(start.copy()), be.zeros((1, 2))
    ours = optimizer_example.Nesterov(learning_rate=0.1, momentum=0.9)
    theirs = torch.tensor(start.copy(), requires_grad=True)
    step = torch.optim.SGD([theirs], lr=0.1, momentum=0.9, nesterov=True)
    for grad in grads:
        layer.dweights, layer.dbiases = be.asarray(grad.copy()), be.zeros((1, 2))
        ours.pre_update_params()
        ours.update_params(layer)
        ours.post_update_params()
        theirs.grad = torch.tensor(grad)
        step.step()
    np.testing.assert_allclose(layer.weights, theirs.detach().numpy(), rtol=0, atol=1e-15)
