"""The `folder` dataset: any data laid out in esx's documented folder format."""

import esx
from esx_folder.dataset import FolderDataset


@esx.hookimpl
def register_datasets(register):
    register("folder", FolderDataset)
