"""Decoy-MNIST on real handwritten digits, and the small CNN of the papers that use it."""

import esx


@esx.hookimpl
def register_datasets(register):
    register("decoy_mnist", "esx_decoy_mnist.dataset:DecoyMnist")


@esx.hookimpl
def register_backbones(register):
    register("mnist_cnn", "esx_decoy_mnist.models:MnistCnn")
    register("mnist_mlp", "esx_decoy_mnist.models:MnistMlp")
