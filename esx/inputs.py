"""Every file esx reads that a person or another program may have written or cut short:
text, CSV and JSON files and safetensors checkpoints, each read here so that a file that
is missing, not UTF-8, malformed or truncated gives one :class:`~esx.errors.DataError`
naming the file and what to do (exit status 2), never a traceback from deep inside a
parser."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from esx.errors import DataError


def read_text(path: Path, fix: str = "") -> str:
    """The file as UTF-8 text. ``fix``: what to do about a file that cannot be read,
    added to the message (default: save it as UTF-8)."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: no such file{'; ' + fix if fix else ''}") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a folder, not a file") from None
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: not UTF-8 text (byte {exc.start} is {exc.object[exc.start]:#04x}); "
            + (fix or "save it as UTF-8, e.g. `iconv -f latin1 -t utf-8 FILE > NEW`")
        ) from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror})") from None


def read_csv(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV file with a header line, as dicts."""
    text = read_text(path)
    try:
        return list(csv.DictReader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise DataError(f"{path}: not a well-formed CSV file ({exc}); check its quoting") from None


def read_json(path: Path, fix: str = "") -> Any:
    """A JSON file's value; ``fix`` is added to the message of a malformed one."""
    text = read_text(path, fix)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); the file may be cut short"
            + (f"; {fix}" if fix else "")
        ) from None


def load_state(path: Path, fix: str = "") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and string metadata of a safetensors file; a missing, truncated or
    foreign file is a :class:`DataError` naming it, with ``fix`` (what to do) appended."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file{'; ' + fix if fix else ''}")
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise DataError(
            f"{path}: not a complete safetensors file ({' '.join(str(exc).split())[:200]}); "
            "it is cut short or was written by another program" + (f"; {fix}" if fix else "")
        ) from None
