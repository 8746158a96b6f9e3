"""LIDC-IDRI's reader contours (from the installed annotation database) on synthetic images."""

import esx


@esx.hookimpl
def register_datasets(register):
    register("lidc_readers", "esx_lidc_readers.dataset:LidcReaders")
