"""Any timm CNN as an esx backbone (:mod:`esx_timm.backbone`).

timm is imported when a recipe first uses the backbone, not when esx starts.
"""

from typing import Any

import esx


@esx.hookimpl
def register_backbones(register):
    register("timm", "esx_timm.backbone:TimmBackbone")


def __getattr__(name: str) -> Any:
    """``from esx_timm import TimmBackbone, TimmParams`` still works (imported on use)."""
    if name in ("TimmBackbone", "TimmParams"):
        from esx_timm import backbone

        return getattr(backbone, name)
    raise AttributeError(f"module 'esx_timm' has no attribute {name!r}")
