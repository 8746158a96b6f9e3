"""Recipes: YAML files that compose components into one experiment.

A recipe is loaded with ``yaml.safe_load`` (no tags, no code), validated
against :class:`Recipe` (unknown keys and wrong types are errors), and each
component's ``params`` are validated by that component's own ``Params``
model. Every problem is collected and reported at once, each with the file,
the line and the key path.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from esx.errors import RecipeError, UnknownComponentError
from esx.hookspecs import FAMILIES
from esx.plugins import Registry


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ComponentSpec(_Strict):
    """Which registered component to use, and its parameters."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class DataSpec(ComponentSpec):
    fallback: ComponentSpec | None = Field(
        None, description="dataset used, announced loudly, when this one's files are absent"
    )


class TrainSpec(_Strict):
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(16, ge=1)
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    lambda_exp: float = Field(0.1, ge=0, description="weight of the explanation loss")
    lambda_gen: float = Field(0.1, ge=0, description="weight of the aggregator's own loss")
    select_metric: Literal["accuracy", "auc", "f1", "loss"] = Field(
        "accuracy", description="validation metric that chooses the best checkpoint"
    )
    num_workers: int = Field(0, ge=0)
    eval_batch_size: int = Field(64, ge=1)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="auto: bf16 on GPUs that support it, else fp16 with a loss "
        "scaler on GPUs, fp32 on CPUs",
    )
    channels_last: bool | None = Field(
        None, description="channels-last memory format; null: on CUDA only, where it helps"
    )


class EvalSpec(_Strict):
    threshold: float = Field(0.5, ge=0, le=1, description="map threshold for explanation IoU")
    overlays: int = Field(6, ge=0, description="test images drawn in overlays.png")
    explainer: ComponentSpec | None = Field(
        None, description="explainer for evaluation maps; default: the training explainer"
    )


class Recipe(_Strict):
    version: Literal[1] = 1
    label: str | None = Field(None, description="row label in reports (default: file name)")
    group: str | None = Field(None, description="table panel in reports")
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    data: DataSpec
    backbone: ComponentSpec
    explainer: ComponentSpec
    aggregator: ComponentSpec
    loss: ComponentSpec
    train: TrainSpec = Field(default_factory=TrainSpec)
    eval: EvalSpec = Field(default_factory=EvalSpec)

    def component(self, family: str) -> ComponentSpec:
        return getattr(self, "data" if family == "dataset" else family)


#: recipe key of each family
FAMILY_KEYS = {f: ("data" if f == "dataset" else f) for f in FAMILIES}


def _line_map(text: str) -> dict[tuple[Any, ...], int]:
    """Key path → 1-based line, from the YAML node tree."""
    lines: dict[tuple[Any, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[Any, ...]) -> None:
        lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = k.value
                lines[path + (key,)] = k.start_mark.line + 1
                walk(v, path + (key,))
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                walk(v, path + (i,))

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return lines
    if root is not None:
        walk(root, ())
    return lines


def _where(source: str, lines: dict[tuple[Any, ...], str], loc: tuple[Any, ...]) -> str:
    """Where a key path came from: ``file:line``, ``--set ...``, or the nearest ancestor's."""
    for n in range(len(loc), -1, -1):
        if tuple(loc[:n]) in lines:
            return lines[tuple(loc[:n])]
    return source


def _fmt_loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def parse_override(item: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` → (["a", "b", "c"], value parsed as YAML)."""
    if "=" not in item:
        raise RecipeError([f"--set {item!r}: expected KEY=VALUE, e.g. train.epochs=3"], "--set")
    key, _, raw = item.partition("=")
    if not key.strip():
        raise RecipeError([f"--set {item!r}: empty key"], "--set")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    out = copy.deepcopy(raw)
    for item in overrides:
        keys, value = parse_override(item)
        node = out
        for k in keys[:-1]:
            if not isinstance(node.get(k), dict):
                node[k] = {}
            node = node[k]
        node[keys[-1]] = value
    return out


def load_recipe(path: str | Path, registry: Registry, overrides: list[str] | None = None) -> Recipe:
    """Read, override, and validate a recipe; raise :class:`RecipeError` listing every problem."""
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise RecipeError([f"no such recipe file: {path} (check the path)"], source)
    text = path.read_text(encoding="utf-8")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise RecipeError([f"{where}: not valid YAML: {problem}"], source) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        kind = type(raw).__name__
        raise RecipeError([f"{source}:1: a recipe must be a mapping of keys, got {kind}"], source)
    raw = apply_overrides(raw, overrides or [])
    lines = {k: f"{source}:{v}" for k, v in _line_map(text).items()}
    for item in overrides or []:
        keys = tuple(parse_override(item)[0])
        for n in range(1, len(keys) + 1):
            lines[keys[:n]] = f"--set {item}"
    return validate_recipe(raw, registry, source, lines)


def validate_recipe(
    raw: dict[str, Any],
    registry: Registry,
    source: str = "<recipe>",
    lines: dict[tuple[Any, ...], str] | None = None,
) -> Recipe:
    """Validate a recipe mapping, its component names and their params."""
    lines = lines or {}
    problems: list[str] = []
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as exc:
        for e in exc.errors():
            loc = tuple(e["loc"])
            got = "" if e["type"] == "missing" else f" (got {e.get('input')!r})"
            if e["type"] == "extra_forbidden":
                got = ""
            problems.append(f"{_where(source, lines, loc)}: {_fmt_loc(loc)}: {e['msg']}{got}")
        recipe = None
    # Component names and params, checked even when the top level had problems.
    for family, key in FAMILY_KEYS.items():
        spec = raw.get(key)
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            continue
        problems += _check_component(registry, family, (key,), spec, source, lines)
    for family, loc in (("dataset", ("data", "fallback")), ("explainer", ("eval", "explainer"))):
        parent = raw.get(loc[0])
        spec = parent.get(loc[1]) if isinstance(parent, dict) else None
        if isinstance(spec, dict) and isinstance(spec.get("name"), str):
            problems += _check_component(registry, family, loc, spec, source, lines)
    if problems or recipe is None:
        raise RecipeError(problems, source)
    return recipe


def _check_component(
    registry: Registry,
    family: str,
    loc: tuple[Any, ...],
    spec: dict[str, Any],
    source: str,
    lines: dict[tuple[Any, ...], str],
) -> list[str]:
    try:
        cls = registry.get(family, spec["name"])
    except UnknownComponentError as exc:
        nloc = loc + ("name",)
        return [f"{_where(source, lines, nloc)}: {_fmt_loc(nloc)}: {exc}"]
    params = spec.get("params") or {}
    if not isinstance(params, dict):
        return []  # the schema already reports a non-mapping params
    try:
        cls.Params.model_validate(params)
    except ValidationError as exc:
        out = []
        for e in exc.errors():
            ploc = loc + ("params",) + tuple(e["loc"])
            quiet = e["type"] in ("missing", "extra_forbidden")
            got = "" if quiet else f" (got {e.get('input')!r})"
            hint = ""
            if e["type"] == "extra_forbidden":
                known = ", ".join(cls.Params.model_fields) or "(none)"
                hint = f"; {family} {spec['name']!r} accepts: {known}"
            out.append(f"{_where(source, lines, ploc)}: {_fmt_loc(ploc)}: {e['msg']}{got}{hint}")
        return out
    return []


def build_params(registry: Registry, family: str, spec: ComponentSpec) -> Any:
    """The validated ``Params`` instance of a component spec."""
    return registry.get(family, spec.name).Params.model_validate(spec.params)


def dump_recipe(recipe: Recipe, registry: Registry) -> str:
    """The resolved recipe as YAML, every component's params with defaults filled in."""
    data = recipe.model_dump(mode="json")
    for family, key in FAMILY_KEYS.items():
        spec = recipe.component(family)
        data[key]["params"] = build_params(registry, family, spec).model_dump(mode="json")
    if recipe.data.fallback is not None:
        data["data"]["fallback"]["params"] = build_params(
            registry, "dataset", recipe.data.fallback
        ).model_dump(mode="json")
    else:
        data["data"].pop("fallback", None)
    if recipe.eval.explainer is not None:
        data["eval"]["explainer"]["params"] = build_params(
            registry, "explainer", recipe.eval.explainer
        ).model_dump(mode="json")
    return yaml.safe_dump(data, sort_keys=False)
