"""Built-in annotation aggregators."""

import esx
from esx_aggregators.consensus import Consensus
from esx_aggregators.oracle import Oracle


@esx.hookimpl
def register_aggregators(register):
    register("consensus", Consensus)
    register("oracle", Oracle)
