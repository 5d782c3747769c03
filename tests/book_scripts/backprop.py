"""Chapter 9: the combined softmax and cross-entropy forward and backward, and each layer's
gradients printed."""

# ruff: noqa: F403, F405 (the book's one line: every class from a star import)

import nnfs
import numpy as np
from book_classes import *
from nnfs.datasets import spiral_data

nnfs.init()

X, y = spiral_data(samples=100, classes=3)
dense1 = Layer_Dense(2, 3)
activation1 = Activation_ReLU()
dense2 = Layer_Dense(3, 3)
loss_activation = Activation_Softmax_Loss_CategoricalCrossentropy()

dense1.forward(X)
activation1.forward(dense1.output)
dense2.forward(activation1.output)
loss = loss_activation.forward(dense2.output, y)
print(loss_activation.output[:5])
print("loss:", loss)
predictions = np.argmax(loss_activation.output, axis=1)
print("acc:", np.mean(predictions == y))

loss_activation.backward(loss_activation.output, y)
dense2.backward(loss_activation.dinputs)
activation1.backward(dense2.dinputs)
dense1.backward(activation1.dinputs)
print(dense1.dweights)
print(dense1.dbiases)
print(dense2.dweights)
print(dense2.dbiases)

# The separate softmax and loss give the same gradient as the combined one.
softmax_outputs = loss_activation.output
activation = Activation_Softmax()
activation.output = softmax_outputs
loss_function = Loss_CategoricalCrossentropy()
loss_function.backward(softmax_outputs, y)
activation.backward(loss_function.dinputs)
print("gradients agree:", np.allclose(activation.dinputs, loss_activation.dinputs, atol=1e-6))
