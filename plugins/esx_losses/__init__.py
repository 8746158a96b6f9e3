"""Built-in explanation-supervision losses."""

import esx


@esx.hookimpl
def register_losses(register):
    register("none", "esx_losses.none:NoExplanationLoss")
    register("gradia", "esx_losses.gradia:Gradia")
    register("haics", "esx_losses.haics:Haics")
    register("res_g", "esx_losses.res_g:ResG")
    register("res_l", "esx_losses.res_l:ResL")
    register("energy", "esx_losses.energy:Energy")
    register("rrr", "esx_losses.rrr:Rrr")
