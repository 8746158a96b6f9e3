"""The error hierarchy of esx.

Every error a user can cause (a recipe, a data file, a command-line flag)
derives from :class:`EsxError`, so the CLI can print its message and exit
non-zero instead of showing a traceback.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable


class EsxError(Exception):
    """Base class of every user-facing esx error."""


class RecipeError(EsxError):
    """A recipe is malformed or invalid. Holds every problem found at once."""

    def __init__(self, problems: list[str], source: str = "<recipe>") -> None:
        self.problems = list(problems)
        self.source = source
        lines = "\n".join(f"  {p}" for p in self.problems)
        n = len(self.problems)
        super().__init__(f"{source}: {n} problem{'s' if n != 1 else ''} in the recipe:\n{lines}")


class UnknownComponentError(EsxError, KeyError):
    """A recipe names a component that no installed plugin registers."""

    def __init__(self, family: str, name: str, known: Iterable[str]) -> None:
        self.family, self.name = family, name
        self.known = sorted(known)
        msg = f"unknown {family} {name!r}; known: {', '.join(self.known) or '(none)'}"
        close = difflib.get_close_matches(name, self.known, n=1)
        if close:
            msg += f". Did you mean {close[0]!r}?"
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class DuplicateComponentError(EsxError):
    """Two plugins register the same name in the same family."""


class PluginLoadError(EsxError):
    """A plugin failed to import or to register its components."""


class DataError(EsxError):
    """A dataset is missing, malformed, or inconsistent with the recipe."""


class DataMissingError(DataError):
    """The data a recipe points at is not on disk (a recipe's ``data.fallback`` may stand in)."""


class NonFiniteLossError(EsxError):
    """A loss term became NaN or Inf during training."""

    @classmethod
    def check(cls, terms: dict[str, float], step: int) -> None:
        """Raise for the first term of ``terms`` (name -> value) that is NaN or infinite."""
        bad = [k for k, v in terms.items() if not math.isfinite(v)]
        if bad:
            raise cls(
                f"step {step}: loss term {bad[0]!r} is {terms[bad[0]]}; lower train.lr or "
                "check the data for NaN pixels"
            )


class DiskFullError(EsxError):
    """A file could not be written because its disk (or the user's quota) is full."""

    #: every message starts with this, so a sweep can tell it from other failures
    PREFIX = "no space left on the disk"

    def __init__(self, path: str, free: str) -> None:
        self.path = path
        super().__init__(
            f"{self.PREFIX} writing {path} ({free} free there). Free space, then run "
            "again: what had finished is kept (a sweep skips finished runs; "
            "esx run --resume continues from the last finished epoch). A finished run "
            "needs only best.safetensors: last.safetensors (~135 MB for a ResNet18) only "
            "resumes an unfinished run and is removed when a run ends (unless "
            "train.keep_last_checkpoint: true), so a finished run's copy can go"
        )
