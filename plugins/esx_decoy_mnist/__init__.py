"""Decoy-MNIST on real handwritten digits, and the small CNN of the papers that use it."""

import esx
from esx_decoy_mnist.dataset import DecoyMnist
from esx_decoy_mnist.models import MnistCnn, MnistMlp


@esx.hookimpl
def register_datasets(register):
    register("decoy_mnist", DecoyMnist)


@esx.hookimpl
def register_backbones(register):
    register("mnist_cnn", MnistCnn)
    register("mnist_mlp", MnistMlp)
