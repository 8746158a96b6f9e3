"""Explainers from Captum, for evaluation: ``captum_gradcam`` (LayerGradCam) and ``deeplift``.

Each runs its own forward pass, so neither can train (``differentiable`` is
False); name one under ``eval.explainer`` to measure the trained model with it.
"""

import esx
from esx_captum.deeplift import DeepLift
from esx_captum.layer_gradcam import CaptumGradCam


@esx.hookimpl
def register_explainers(register):
    register("captum_gradcam", CaptumGradCam)
    register("deeplift", DeepLift)
