"""MAGI: the multi-annotation generator as an aggregator."""

import esx
from esx_magi.magi import Magi


@esx.hookimpl
def register_aggregators(register):
    register("magi", Magi)
