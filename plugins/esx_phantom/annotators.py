"""The phantom's simulated annotators: :mod:`esx.panels` applied to a rendered slice.

The personalities, their parameters and the panel draw live in :mod:`esx.panels`
(one implementation for every dataset with a true mask); here a slice gives them
its lesion as the truth, its look-alike and spurious cue as the distractors a
``wrong_object`` annotator marks, and its drawn lesion radius as their scale.
A public module: ``esx_prepare``'s MSD reader annotates its slices with it.
"""

from __future__ import annotations

import numpy as np

from esx.panels import AnnotatorSpec, Kind
from esx.panels import annotate as annotate_mask
from esx_phantom.render import Slice

__all__ = ["AnnotatorSpec", "Kind", "annotate", "distractors"]


def distractors(sl: Slice) -> tuple[np.ndarray, np.ndarray]:
    """What a ``wrong_object`` annotator marks instead, first found first: the
    look-alike, then the spurious cue."""
    return sl.lookalike, sl.cue


def annotate(spec: AnnotatorSpec, sl: Slice, rng: np.random.Generator) -> np.ndarray:
    """The mask annotator ``spec`` draws for slice ``sl``."""
    return annotate_mask(spec, sl.lesion, rng, distractors(sl), sl.lesion_radius)
