"""xpnn: the networks of "Neural Networks from Scratch", on NumPy or CuPy from the same code."""

from .activations import ReLU, Softmax
from .backend import Backend, get_backend, to_numpy
from .layers import Dense, Layer
from .losses import CategoricalCrossentropy, Loss, SoftmaxCategoricalCrossentropy
from .metrics import Accuracy, CategoricalAccuracy
from .model import History, Model
from .optimizers import Adam, Optimizer

__version__ = "0.1.0"

__all__ = [
    "Accuracy",
    "Adam",
    "Backend",
    "CategoricalAccuracy",
    "CategoricalCrossentropy",
    "Dense",
    "History",
    "Layer",
    "Loss",
    "Model",
    "Optimizer",
    "ReLU",
    "Softmax",
    "SoftmaxCategoricalCrossentropy",
    "get_backend",
    "to_numpy",
]
