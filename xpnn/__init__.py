"""xpnn: the networks of "Neural Networks from Scratch", on NumPy or CuPy from the same code."""

from . import datasets, distributed, idx
from .activations import LeakyReLU, Linear, ReLU, Sigmoid, Softmax, Tanh
from .backends import Backend, get_backend, to_numpy
from .building import Network
from .gradcheck import GradientCheckError, check_gradients
from .history import History
from .io import XpnnFileError
from .layers import Dense, Dropout, Layer
from .losses import (
    BinaryCrossentropy,
    CategoricalCrossentropy,
    Loss,
    MeanAbsoluteError,
    MeanSquaredError,
    SoftmaxCategoricalCrossentropy,
)
from .metrics import Accuracy, CategoricalAccuracy, RegressionAccuracy
from .model import Model
from .optimizers import SGD, Adagrad, Adam, AdamW, Optimizer, RMSprop
from .parts import register, unregister
from .training import NonFiniteLossError

__version__ = "0.1.0"

__all__ = [
    "SGD",
    "Accuracy",
    "Adagrad",
    "Adam",
    "AdamW",
    "Backend",
    "BinaryCrossentropy",
    "CategoricalAccuracy",
    "CategoricalCrossentropy",
    "Dense",
    "Dropout",
    "GradientCheckError",
    "History",
    "Layer",
    "LeakyReLU",
    "Linear",
    "Loss",
    "MeanAbsoluteError",
    "MeanSquaredError",
    "Model",
    "Network",
    "NonFiniteLossError",
    "Optimizer",
    "RMSprop",
    "ReLU",
    "RegressionAccuracy",
    "Sigmoid",
    "Softmax",
    "SoftmaxCategoricalCrossentropy",
    "Tanh",
    "XpnnFileError",
    "check_gradients",
    "datasets",
    "distributed",
    "get_backend",
    "idx",
    "register",
    "to_numpy",
    "unregister",
]
