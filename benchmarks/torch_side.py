"""PyTorch eager side of a benchmark: the same network, optimizer and batching as xpnn's."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from workloads import Workload


def build(
    workload: Workload,
    X: np.ndarray,
    y: np.ndarray,
    device: str,
    initial: list[tuple[np.ndarray, np.ndarray]],
    seed: int = 0,
) -> Callable[[int], tuple[float, float, int, int]]:
    """A function that trains ``epochs`` more epochs and returns (loss, accuracy, steps run,
    host reads: one). ``initial``: xpnn's (weights, biases) of each Dense layer, copied in.

    As xpnn does: a fresh permutation each epoch, batches gathered by index, loss and accuracy
    summed on the device per step and read on the host once per call. The learning-rate decay
    ``lr / (1 + decay * step)`` is set on the param group before each step (xpnn's formula).
    """
    torch.manual_seed(seed)
    widths = workload.widths
    layers: list[nn.Module] = []
    for index, (n_inputs, n_neurons) in enumerate(itertools.pairwise(widths)):
        layers.append(nn.Linear(n_inputs, n_neurons))
        if index < len(widths) - 2:
            layers.append(nn.ReLU())
    with torch.no_grad():
        for linear, (weights, biases) in zip(layers[::2], initial):
            linear.weight.copy_(torch.from_numpy(weights.T.copy()))
            linear.bias.copy_(torch.from_numpy(biases.ravel().copy()))
    model = nn.Sequential(*layers).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=workload.learning_rate, eps=1e-7)
    loss_fn = nn.CrossEntropyLoss()  # on logits: softmax and cross-entropy in one
    X_t, y_t = torch.from_numpy(X).to(device), torch.from_numpy(y).to(device)
    samples, batch_size = X_t.shape[0], workload.batch_size
    step = 0

    def train(epochs: int) -> tuple[float, float, int]:
        nonlocal step
        first, sums = step, []
        for _ in range(epochs):
            order = torch.randperm(samples, device=device)
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), dtype=torch.int64, device=device)
            for start in range(0, samples, batch_size):
                indices = order[start : start + batch_size]
                batch_X, batch_y = X_t.index_select(0, indices), y_t.index_select(0, indices)
                if workload.decay:
                    for group in optimizer.param_groups:
                        group["lr"] = workload.learning_rate / (1.0 + workload.decay * step)
                logits = model(batch_X)
                loss = loss_fn(logits, batch_y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                step += 1
                with torch.no_grad():
                    loss_sum += loss * indices.numel()
                    correct += (logits.argmax(dim=1) == batch_y).sum()
            sums.append(torch.stack([loss_sum, correct.to(loss_sum.dtype)]))
        loss, accuracy = (torch.stack(sums)[-1] / samples).tolist()  # the one host read
        return loss, accuracy, step - first, 1

    return train


def library_info() -> dict[str, str]:
    """Versions of what this side runs on."""
    return {"torch": torch.__version__, "numpy": np.__version__}
