"""Chapters 3 to 5: a forward pass through two dense layers, ReLU and softmax, the loss and
the accuracy, each printed as the chapters print them."""

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
activation2 = Activation_Softmax()
loss_function = Loss_CategoricalCrossentropy()

dense1.forward(X)
print(dense1.output[:5])
activation1.forward(dense1.output)
dense2.forward(activation1.output)
activation2.forward(dense2.output)
print(activation2.output[:5])
loss = loss_function.calculate(activation2.output, y)
print("loss:", loss)
predictions = np.argmax(activation2.output, axis=1)
if len(y.shape) == 2:
    y = np.argmax(y, axis=1)
accuracy = np.mean(predictions == y)
print("acc:", accuracy)
