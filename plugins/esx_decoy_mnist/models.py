"""The small models of the Decoy-MNIST papers: CDEP's CNN and Ross et al.'s MLP.

The architecture of CDEP's Decoy-MNIST experiments (Rieger et al., "Interpretations
are useful", ICML 2020; ``mnist/DecoyMNIST/train_mnist_decoy.py`` of
laura-rieger/deep-explanation-penalization), itself PyTorch's MNIST example with a
256-unit hidden layer: two 5×5 convolutions (20 and 50 channels, each followed by
ReLU and 2×2 max-pooling) and two dense layers (256 units, ReLU, then the classes).

It is split after the second convolution's ReLU (``(B, 50, 8, 8)`` for 28×28
inputs), so Grad-CAM reads an 8×8 map; input-gradient explainers do not read it.

The MLP is Ross et al.'s ("Right for the Right Reasons", IJCAI 2017;
``rrr/multilayer_perceptron.py`` of dtak/rrr): the flattened image, two ReLU
layers of 50 and 30 units, then the classes, every weight and bias drawn from
N(0, 0.1²) (``init: ross``; ``init: pytorch`` for PyTorch's default). It has no
feature map: ``forward_features`` returns the image itself, so it serves
input-gradient explainers only.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from esx.errors import DataError
from esx.interfaces import Backbone, BuildContext, Params


class MnistCnnParams(Params):
    channels: tuple[int, int] = Field(
        (20, 50), description="output channels of the two 5x5 convolutions (CDEP: 20, 50)"
    )
    hidden: int = Field(256, gt=0, description="units of the hidden dense layer (CDEP: 256)")


class MnistCnn(Backbone):
    """conv5(20)–ReLU–pool2–conv5(50)–ReLU | pool2–dense(256)–ReLU–dense(classes)."""

    Params = MnistCnnParams

    def __init__(self, params: MnistCnnParams, context: BuildContext) -> None:
        super().__init__(params, context)
        info = context.data
        h, w = info.image_size
        side = [((s - 4) // 2 - 4) // 2 for s in (h, w)]
        if min(side) < 1:
            raise DataError(
                f"backbone 'mnist_cnn' needs images of at least 16x16 pixels; dataset "
                f"{info.name!r} gives {h}x{w}. Use a timm backbone for these images"
            )
        c1, c2 = params.channels
        self.conv1 = nn.Conv2d(info.in_chans, c1, 5)
        self.conv2 = nn.Conv2d(c1, c2, 5)
        self.fc1 = nn.Linear(c2 * side[0] * side[1], params.hidden)
        self.fc2 = nn.Linear(params.hidden, info.num_classes)

    def forward_features(self, image: Tensor) -> Tensor:
        x = F.max_pool2d(F.relu(self.conv1(image)), 2)
        return F.relu(self.conv2(x))

    def forward_head(self, features: Tensor) -> Tensor:
        x = F.max_pool2d(features, 2).flatten(1)
        return self.fc2(F.relu(self.fc1(x)))


class MnistMlpParams(Params):
    hidden: tuple[int, ...] = Field(
        (50, 30), description="hidden layer widths (Ross et al.: 50, 30)"
    )
    init: Literal["ross", "pytorch"] = Field(
        "ross", description="ross: weights and biases from N(0, 0.1^2); pytorch: its default"
    )


class MnistMlp(Backbone):
    """flatten–[dense–ReLU]×len(hidden)–dense(classes); features are the image itself."""

    Params = MnistMlpParams

    def __init__(self, params: MnistMlpParams, context: BuildContext) -> None:
        super().__init__(params, context)
        info = context.data
        sizes = [info.in_chans * info.image_size[0] * info.image_size[1], *params.hidden]
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(sizes[-1], info.num_classes))
        self.mlp = nn.Sequential(nn.Flatten(), *layers)
        if params.init == "ross":
            with torch.no_grad():  # the run's seeded generator, as every esx initialisation
                for p in self.mlp.parameters():
                    p.normal_(0.0, 0.1)

    def forward_features(self, image: Tensor) -> Tensor:
        return image

    def forward_head(self, features: Tensor) -> Tensor:
        return self.mlp(features)
