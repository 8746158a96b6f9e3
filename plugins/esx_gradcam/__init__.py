"""Explainers for training: ``gradcam`` (differentiable, batched Grad-CAM at any layer) and
``input_gradient`` (squared input gradients, for the ``rrr`` loss)."""

import esx


@esx.hookimpl
def register_explainers(register):
    register("gradcam", "esx_gradcam.gradcam:GradCam")
    register("input_gradient", "esx_gradcam.input_gradient:InputGradient")
