"""Explainer ``gradcam``: differentiable, batched Grad-CAM for training and evaluation."""

import esx
from esx_gradcam.gradcam import GradCam


@esx.hookimpl
def register_explainers(register):
    register("gradcam", GradCam)
