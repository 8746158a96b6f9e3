"""Explainers from Captum, for evaluation: ``captum_gradcam`` (LayerGradCam) and ``deeplift``.

Each runs its own forward pass, so neither can train (``differentiable`` is
False); name one under ``eval.explainer`` to measure the trained model with it.
"""

import esx


@esx.hookimpl
def register_explainers(register):
    register("captum_gradcam", "esx_captum.layer_gradcam:CaptumGradCam")
    register("deeplift", "esx_captum.deeplift:DeepLift")
