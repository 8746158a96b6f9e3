"""What ``esx data prepare NAME`` runs: the datasets it knows, and :func:`prepare`."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console

from esx.errors import EsxError
from esx_prepare import common, lidc, msd

#: command name -> (options model, case finder, case preparer, source name, what --root is)
DATASETS: dict[str, tuple[Any, Any, Any, str, str]] = {
    "lidc": (
        lidc.LidcOptions,
        lidc.find_cases,
        lidc.prepare_case,
        "LIDC-IDRI",
        "the LIDC-IDRI download (DICOM series with their XML reads)",
    ),
    "msd-pancreas": (
        msd.PancreasOptions,
        msd.find_cases,
        msd.prepare_case,
        "MSD Task07_Pancreas",
        "Task07_Pancreas (imagesTr/, labelsTr/)",
    ),
}


def prepare(
    name: str, root: Path, out: Path, options: dict[str, Any], sizes: str, console: Console
) -> common.Summary:
    """Prepare every case of dataset ``name`` under ``root`` into ``out``."""
    model, find_cases, prepare_case, source, what = DATASETS[name]
    try:
        opts = model.model_validate(options)
    except ValidationError as err:
        raise EsxError(
            "; ".join(
                f"--{str(e['loc'][0]).replace('_', '-')}: {e['msg']} (got {e.get('input')!r})"
                for e in err.errors()
            )
        ) from None
    split = common.parse_sizes(sizes)
    if not root.is_dir():
        raise EsxError(f"--root {root}: no such folder; point it at {what}")
    cases = find_cases(root)
    if not cases:
        raise EsxError(f"--root {root}: no case found; point it at {what}")
    writer = common.Writer(out, source, opts.model_dump(mode="json"))  # --sizes only re-splits
    summary = common.run_cases(
        cases, partial(prepare_case, opts=opts), writer, console, f"preparing {source}"
    )
    writer.finish(split, opts.seed, summary, console)
    common.report(summary, out, console)
    return summary
