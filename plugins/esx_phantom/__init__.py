"""The synthetic phantom dataset and its simulated annotators."""

import esx
from esx_phantom.dataset import Phantom


@esx.hookimpl
def register_datasets(register):
    register("phantom", Phantom)
