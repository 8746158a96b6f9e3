"""Built-in annotation aggregators."""

import esx
from esx_aggregators.consensus import Consensus
from esx_aggregators.em import Em
from esx_aggregators.meanloss import MeanLoss
from esx_aggregators.oracle import Oracle
from esx_aggregators.random_mask import RandomMask
from esx_aggregators.staple import Staple


@esx.hookimpl
def register_aggregators(register):
    register("consensus", Consensus)
    register("oracle", Oracle)
    register("random", RandomMask)
    register("meanloss", MeanLoss)
    register("em", Em)
    register("staple", Staple)
