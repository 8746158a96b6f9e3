"""Explainers: differentiable Grad-CAM (training); Captum Grad-CAM and DeepLift (evaluation)."""

import esx
from esx_gradcam.captum_gradcam import CaptumGradCam
from esx_gradcam.deeplift import DeepLift
from esx_gradcam.gradcam import GradCam


@esx.hookimpl
def register_explainers(register):
    register("gradcam", GradCam)
    register("captum_gradcam", CaptumGradCam)
    register("deeplift", DeepLift)
