"""Built-in explanation-supervision losses."""

import esx
from esx_losses.gradia import Gradia
from esx_losses.none import NoExplanationLoss


@esx.hookimpl
def register_losses(register):
    register("none", NoExplanationLoss)
    register("gradia", Gradia)
