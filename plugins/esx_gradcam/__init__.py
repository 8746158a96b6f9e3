"""Explainers for training: ``gradcam`` (differentiable, batched Grad-CAM at any layer) and
``input_gradient`` (squared input gradients, for the ``rrr`` loss)."""

import esx
from esx_gradcam.gradcam import GradCam
from esx_gradcam.input_gradient import InputGradient


@esx.hookimpl
def register_explainers(register):
    register("gradcam", GradCam)
    register("input_gradient", InputGradient)
