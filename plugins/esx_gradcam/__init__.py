"""Grad-CAM explainers: a differentiable one for training, Captum's for evaluation."""

import esx
from esx_gradcam.captum_gradcam import CaptumGradCam
from esx_gradcam.gradcam import GradCam


@esx.hookimpl
def register_explainers(register):
    register("gradcam", GradCam)
    register("captum_gradcam", CaptumGradCam)
