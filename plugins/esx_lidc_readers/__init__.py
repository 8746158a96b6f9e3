"""LIDC-IDRI's reader contours (from the installed annotation database) on synthetic images."""

import esx
from esx_lidc_readers.dataset import LidcReaders


@esx.hookimpl
def register_datasets(register):
    register("lidc_readers", LidcReaders)
