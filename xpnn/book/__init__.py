"""The book's classes under the book's names, on xpnn's layers and kernels.

Replace a chapter's class definitions with ``from xpnn.book import *`` and the script runs as
before, on every backend and, on NumPy, through xpnn's compiled kernels::

    import nnfs
    from nnfs.datasets import spiral_data
    from xpnn.book import *

    nnfs.init()
    dense1 = Layer_Dense(2, 64)
    ...

``xpnn.book.use("cupy")`` (or ``XPNN_BOOK_BACKEND=cupy`` in the environment) makes the objects
created afterwards compute on a GPU; ``"strict"`` on the array-API stand-in.
"""

from ._device import OnDevice, use
from .layers import (
    Activation_Linear,
    Activation_ReLU,
    Activation_Sigmoid,
    Activation_Softmax,
    Layer_Dense,
    Layer_Dropout,
    Layer_Input,
)
from .losses import (
    Accuracy,
    Accuracy_Categorical,
    Accuracy_Regression,
    Activation_Softmax_Loss_CategoricalCrossentropy,
    Loss,
    Loss_BinaryCrossentropy,
    Loss_CategoricalCrossentropy,
    Loss_MeanAbsoluteError,
    Loss_MeanSquaredError,
)
from .model import Model
from .optimizers import (
    Optimiser_Adam,
    Optimizer_Adagrad,
    Optimizer_Adam,
    Optimizer_RMSprop,
    Optimizer_SGD,
)

__all__ = [
    "Accuracy",
    "Accuracy_Categorical",
    "Accuracy_Regression",
    "Activation_Linear",
    "Activation_ReLU",
    "Activation_Sigmoid",
    "Activation_Softmax",
    "Activation_Softmax_Loss_CategoricalCrossentropy",
    "Layer_Dense",
    "Layer_Dropout",
    "Layer_Input",
    "Loss",
    "Loss_BinaryCrossentropy",
    "Loss_CategoricalCrossentropy",
    "Loss_MeanAbsoluteError",
    "Loss_MeanSquaredError",
    "Model",
    "Optimiser_Adam",
    "Optimizer_Adagrad",
    "Optimizer_Adam",
    "Optimizer_RMSprop",
    "Optimizer_SGD",
]

# Not star-exported (a script's own names stay its own), but importable by name.
_EXTRA = (OnDevice, use)
