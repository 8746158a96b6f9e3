"""MAGI: the multi-annotation generator as an aggregator."""

import esx


@esx.hookimpl
def register_aggregators(register):
    register("magi", "esx_magi.magi:Magi")
