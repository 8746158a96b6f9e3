"""The synthetic phantom dataset and its simulated annotators."""

import esx


@esx.hookimpl
def register_datasets(register):
    register("phantom", "esx_phantom.dataset:Phantom")
