"""Preparation commands: raw LIDC-IDRI and MSD pancreas files -> esx's folder format.

Run through the CLI (``esx data prepare lidc`` / ``esx data prepare msd-pancreas``),
which this plugin adds with the ``register_commands`` hook (:mod:`esx_prepare.commands`);
the output is read by the ``folder`` dataset. See docs/howto/own-data.md.
"""

from esx_prepare.commands import register_commands  # noqa: F401  (the plugin's hook)
