"""What a component's ``Params`` model accepts, for ``esx plugins NAME`` and the docs."""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined


def _type(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if isinstance(annotation, type) else None
    text = text or str(annotation)
    return re.sub(r"\b(typing|esx\w*(\.\w+)*)\.", "", text).replace("NoneType", "None")


def _default(field: Any) -> str:
    if field.default is PydanticUndefined:
        if field.default_factory is None:
            return "(required)"
        value = field.default_factory()
    else:
        value = field.default
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    elif isinstance(value, list) and value and isinstance(value[0], BaseModel):
        value = [v.model_dump(mode="json") for v in value]
    return json.dumps(value, default=str)


def describe_params(model: type[BaseModel]) -> list[dict[str, str]]:
    """One row per parameter: name, type, default (JSON) and description."""
    return [
        {
            "name": name,
            "type": _type(f.annotation),
            "default": _default(f),
            "description": f.description or "",
        }
        for name, f in model.model_fields.items()
    ]
