"""The ``panel`` dataset: simulated annotators (:mod:`esx.panels`) around any dataset with
a true mask, so a recipe names its annotator panel independently of its images."""

import esx


@esx.hookimpl
def register_datasets(register):
    register("panel", "esx_panels.dataset:Panel")
