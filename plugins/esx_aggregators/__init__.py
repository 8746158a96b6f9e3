"""Built-in annotation aggregators."""

import esx


@esx.hookimpl
def register_aggregators(register):
    register("consensus", "esx_aggregators.consensus:Consensus")
    register("oracle", "esx_aggregators.oracle:Oracle")
    register("random", "esx_aggregators.random_mask:RandomMask")
    register("meanloss", "esx_aggregators.meanloss:MeanLoss")
    register("em", "esx_aggregators.em:Em")
    register("staple", "esx_aggregators.staple:Staple")
