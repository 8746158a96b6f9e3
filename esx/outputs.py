"""The run folder: every file written atomically (temporary file, then rename)."""

from __future__ import annotations

import csv
import errno
import io
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save

from esx import inputs
from esx.errors import DiskFullError, EsxError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic(path: Path, write: Any) -> None:
    """Write through a temporary file and rename it into place, so a reader never sees half
    a file. The file gets the mode an ordinary ``open`` would (0666 less the umask), not the
    temporary file's private 0600, so colleagues can read a run on a shared machine."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(str(path), _free(path.parent)) from None
        raise


def _free(folder: Path) -> str:
    """The free space on ``folder``'s disk, as a person reads it."""
    try:
        return human_size(shutil.disk_usage(folder).free)
    except OSError:
        return "unknown"


def human_size(n: float) -> str:
    """Bytes as a person reads them: 512 B, 4.4 MB, 52.0 GB (powers of 1024)."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def write_bytes(path: Path, data: bytes) -> None:
    _atomic(path, lambda f: f.write(data))


def write_text(path: Path, text: str) -> None:
    _atomic(path, lambda f: f.write(text.encode("utf-8")))


def _clean(obj: Any) -> Any:
    """JSON has no NaN: write ``null`` instead."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(_clean(obj), indent=2) + "\n")


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    write_text(path, buf.getvalue())


def save_state(
    path: Path, state: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> None:
    """Save tensors as safetensors (loading it can never run code), atomically."""
    flat = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
    _atomic(path, lambda f: f.write(save(flat, metadata=metadata)))


def load_state(path: Path, fix: str = "") -> dict[str, torch.Tensor]:
    """A checkpoint's tensors (:func:`esx.inputs.load_state`: a truncated file is an error
    naming it, with ``fix`` appended)."""
    return inputs.load_state(path, fix)[0]


def load_state_with_meta(
    path: Path, fix: str = ""
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and the string metadata of a safetensors file (:func:`esx.inputs.load_state`)."""
    return inputs.load_state(path, fix)


def prepare_run_dir(path: Path, overwrite: bool) -> Path:
    """Create the run folder; refuse a non-empty one unless ``overwrite``."""
    path = Path(path)
    if path.exists() and any(path.iterdir()) and not overwrite:
        raise EsxError(
            f"run folder {path} already exists and is not empty; pass --overwrite to replace "
            "its files or --out to choose another folder"
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".esx-write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(str(path), _free(path)) from None
        raise EsxError(f"cannot write to run folder {path}: {exc.strerror}; choose --out") from None
    return path
