"""The `folder` dataset: any data laid out in esx's documented folder format."""

import esx


@esx.hookimpl
def register_datasets(register):
    register("folder", "esx_folder.dataset:FolderDataset")
