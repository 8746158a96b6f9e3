"""esx: explanation-supervised training of image classifiers from noisy multi-annotator masks."""

from esx.hookspecs import hookimpl
from esx.types import Batch, Targets

__all__ = ["Batch", "Targets", "hookimpl", "__version__"]
__version__ = "0.1.0"
