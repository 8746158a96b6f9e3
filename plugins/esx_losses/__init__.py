"""Built-in explanation-supervision losses."""

import esx
from esx_losses.energy import Energy
from esx_losses.gradia import Gradia
from esx_losses.haics import Haics
from esx_losses.none import NoExplanationLoss
from esx_losses.res_g import ResG
from esx_losses.res_l import ResL
from esx_losses.rrr import Rrr


@esx.hookimpl
def register_losses(register):
    register("none", NoExplanationLoss)
    register("gradia", Gradia)
    register("haics", Haics)
    register("res_g", ResG)
    register("res_l", ResL)
    register("energy", Energy)
    register("rrr", Rrr)
