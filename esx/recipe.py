"""Recipes: YAML files that compose components into one experiment.

A recipe is loaded with ``yaml.safe_load`` (no tags, no code), merged onto
the recipe its ``base:`` key names (if any), overridden by ``--set`` items,
validated against :class:`Recipe` (unknown keys and wrong types are errors),
and each component's ``params`` are validated by that component's own
``Params`` model. Every problem is collected and reported at once, each with
the file, the line and the key path. The result is a *resolved* recipe: each
component slot holds its class and its validated parameters.
"""

from __future__ import annotations

import copy
import difflib
import functools
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from esx.errors import RecipeError, UnknownComponentError
from esx.plugins import Registry


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ComponentSpec(_Strict):
    """Which registered component to use, and its parameters.

    In a recipe file ``params`` is a mapping. Once the recipe is validated
    (:func:`validate_recipe`) the spec is *resolved*: ``params`` holds the
    component's validated ``Params`` instance, every default filled in, and
    :attr:`cls` the registered class, so :meth:`build` needs no lookup.
    """

    name: str = Field(description="a registered component's name (esx plugins lists them)")
    params: Any = Field(
        default_factory=dict, description="the component's parameters (reference: components)"
    )
    _cls: Any = PrivateAttr(None)

    @field_validator("params", mode="before")
    @classmethod
    def _mapping(cls, v: Any) -> Any:
        if v is None:
            return {}
        if not isinstance(v, dict | BaseModel):
            raise ValueError(f"params must be a mapping of keys, got {type(v).__name__}")
        return v

    @property
    def cls(self) -> Any:
        """The component class (resolved specs only)."""
        if self._cls is None:
            raise RuntimeError(f"component {self.name!r} is not resolved; use validate_recipe")
        return self._cls

    def resolve(self, cls: Any, params: Any) -> None:
        self._cls, self.params = cls, params

    def build(self, context: Any) -> Any:
        """``cls(params, context)``: the one way every family is built."""
        return self.cls(self.params, context)


class DataSpec(ComponentSpec):
    fallback: ComponentSpec | None = Field(
        None,
        description="dataset used, announced loudly, when this one's files are absent; "
        "ignored when --set changes data (a location you typed fails with its path)",
    )


class TrainSpec(_Strict):
    epochs: int = Field(30, ge=1, description="passes over the training split")
    batch_size: int = Field(16, ge=1, description="training images per step (all processes)")
    lr: float = Field(1e-4, gt=0, description="Adam's learning rate")
    weight_decay: float = Field(0.0, ge=0, description="Adam's weight decay")
    lambda_exp: float = Field(0.1, ge=0, description="weight of the explanation loss")
    lambda_gen: float = Field(0.1, ge=0, description="weight of the aggregator's own loss")
    select_metric: Literal["accuracy", "auc", "f1", "loss"] = Field(
        "accuracy", description="validation metric that chooses the best checkpoint"
    )
    num_workers: int = Field(0, ge=0, description="data-loading processes (0: in the run's own)")
    eval_batch_size: int = Field(64, ge=1, description="images per batch at evaluation")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="auto: bf16 on GPUs that support it, else fp16 with a loss "
        "scaler on GPUs, fp32 on CPUs",
    )
    keep_last_checkpoint: bool = Field(
        False,
        description="keep last.safetensors (model, optimiser, RNGs; ~135 MB for a "
        "ResNet18) once the run has finished (default: deleted; it only resumes an "
        "unfinished run, and best.safetensors holds the chosen weights)",
    )
    channels_last: bool | None = Field(
        None, description="channels-last memory format; null: on CUDA only, where it helps"
    )


class EvalSpec(_Strict):
    threshold: float = Field(0.5, ge=0, le=1, description="map threshold for explanation IoU")
    pointing_tolerance: float = Field(
        0,
        ge=0,
        description="pointing game: a map's maximum within this many pixels of the mask hits",
    )
    overlays: int = Field(6, ge=0, description="test images drawn in overlays.png")
    explainer: ComponentSpec | None = Field(
        None, description="explainer for evaluation maps; default: the training explainer"
    )


class Recipe(_Strict):
    version: Literal[1] = Field(1, description="the recipe format's version")
    label: str | None = Field(None, description="row label in reports (default: file name)")
    group: str | None = Field(None, description="table panel in reports")
    reference: bool = Field(
        False, description="esx report compares every other row with this one, paired by seed"
    )
    seed: int = Field(0, description="training seed (initialisation, order, dropout)")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto: the GPU when there is one, else the CPU"
    )
    data: DataSpec = Field(description="the dataset (name, params, fallback)")
    backbone: ComponentSpec = Field(description="the classifier")
    explainer: ComponentSpec = Field(description="the explanation method trained through")
    aggregator: ComponentSpec = Field(description="how the annotators' masks become targets")
    loss: ComponentSpec = Field(description="the explanation-supervision loss")
    train: TrainSpec = Field(default_factory=TrainSpec, description="training settings")
    eval: EvalSpec = Field(default_factory=EvalSpec, description="evaluation settings")

    def slots(self) -> dict[tuple[str, ...], ComponentSpec]:
        """Every component spec the recipe holds, by key path (absent optional ones left out)."""
        found = {}
        for loc in SLOTS:
            node: Any = self
            for key in loc:
                node = getattr(node, key, None)
            if node is not None:
                found[loc] = node
        return found


#: Every place a recipe names a component: key path -> family.
SLOTS: dict[tuple[str, ...], str] = {
    ("data",): "dataset",
    ("data", "fallback"): "dataset",
    ("backbone",): "backbone",
    ("explainer",): "explainer",
    ("eval", "explainer"): "explainer",
    ("aggregator",): "aggregator",
    ("loss",): "loss",
}


#: a recipe's YAML, its aliases expanded, may hold at most this many nodes and nest at most
#: this deep (a real recipe holds a few hundred nodes, five deep); a file past either is
#: refused before anything is expanded, so a "billion laughs" costs no time or memory
MAX_NODES, MAX_DEPTH = 20_000, 40


def _check_size(root: yaml.Node | None, source: str) -> None:
    """Refuse a node tree whose expansion would exceed :data:`MAX_NODES` or
    :data:`MAX_DEPTH`, counting each alias's node once per use without expanding it."""
    sizes: dict[int, int] = {}
    busy: set[int] = set()

    def size(node: yaml.Node, depth: int) -> int:
        if depth > MAX_DEPTH:
            raise RecipeError(
                [
                    f"{source}: nested more than {MAX_DEPTH} levels deep; a recipe is a few "
                    "levels of keys"
                ],
                source,
            )
        if id(node) in sizes:
            return sizes[id(node)]
        if id(node) in busy:
            raise RecipeError([f"{source}: an alias refers to itself (&anchor inside it)"], source)
        busy.add(id(node))
        children: list[yaml.Node] = []
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        total = 1
        for child in children:
            total += size(child, depth + 1)
            if total > MAX_NODES:
                raise RecipeError(
                    [
                        f"{source}: its aliases expand to more than {MAX_NODES:,} values; a recipe "
                        "holds a few hundred (is it a recipe? YAML anchors that repeat anchors "
                        "grow exponentially)"
                    ],
                    source,
                )
        busy.discard(id(node))
        sizes[id(node)] = total
        return total

    if root is not None:
        size(root, 0)


def _line_map(root: yaml.Node | None) -> dict[tuple[Any, ...], int]:
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


def merge(base: Any, child: Any) -> Any:
    """``child`` laid over ``base``: mappings merge key by key, anything else is replaced.

    A component slot (a mapping with a ``name``) that names another component
    is replaced whole, so the base's parameters never reach a different class.
    """
    if not (isinstance(base, dict) and isinstance(child, dict)):
        return copy.deepcopy(child)
    if "name" in child and "name" in base and child["name"] != base["name"]:
        return copy.deepcopy(child)
    out = copy.deepcopy(base)
    for key, value in child.items():
        out[key] = merge(out[key], value) if key in out else copy.deepcopy(value)
    return out


def _read(path: Path, chain: tuple[Path, ...]) -> tuple[dict[str, Any], dict[tuple, str]]:
    """A recipe file's mapping (its ``base:`` merged in) and the file:line of each key."""
    source = str(path)
    if path.is_dir():
        raise RecipeError([f"{path} is a folder; give a recipe file (a .yaml file)"], source)
    if not path.is_file():
        raise RecipeError([f"no such recipe file: {path} (check the path)"], source)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise RecipeError(
            [f"{path} is not a text file (not UTF-8); a recipe is a YAML text file"], source
        ) from None
    raw, lines = copy.deepcopy(_parse(source, text))
    base = raw.pop("base", None)
    if base is None:
        return raw, lines
    where = lines.get(("base",), source)
    if not isinstance(base, str) or not base.strip():
        raise RecipeError([f"{where}: base: must be the path of a recipe file"], source)
    base_path = (path.parent / base).resolve()
    if base_path in chain:
        cycle = " -> ".join(str(p) for p in (*chain, base_path))
        raise RecipeError([f"{where}: base: recipes inherit in a cycle: {cycle}"], source)
    if not base_path.is_file():
        raise RecipeError(
            [
                f"{where}: base: no recipe file {base_path} (a base path is relative to the "
                f"folder of {path.name})"
            ],
            source,
        )
    base_raw, base_lines = _read(base_path, (*chain, base_path))
    return merge(base_raw, raw), {**base_lines, **lines}


@functools.lru_cache(maxsize=256)
def _parse(source: str, text: str) -> tuple[dict[str, Any], dict[tuple, str]]:
    """The recipe file ``source``'s own mapping (``base:`` not followed) and the file:line
    of each key, parsed once per text (a sweep loads each recipe file once per run it
    plans; an edited file is parsed anew). Callers take a deep copy."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        _check_size(root, source)  # before anything is expanded
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise RecipeError([f"{where}: not valid YAML: {problem}"], source) from None
    if raw is None:
        raise RecipeError(
            [
                f"{source}: the file is empty; a recipe needs at least data, backbone, explainer, "
                "aggregator and loss (see recipes/quickstart.yaml)"
            ],
            source,
        )
    if not isinstance(raw, dict):
        kind = type(raw).__name__
        raise RecipeError([f"{source}:1: a recipe must be a mapping of keys, got {kind}"], source)
    return raw, {k: f"{source}:{v}" for k, v in _line_map(root).items()}


def load_recipe(path: str | Path, registry: Registry, overrides: list[str] | None = None) -> Recipe:
    """Read, inherit, override, validate and resolve a recipe.

    Raises:
        RecipeError: listing every problem, each with its file and line.
    """
    path = Path(path)
    raw, lines = _read(path, (path.resolve(),))
    raw = apply_overrides(raw, overrides or [])
    typed = [tuple(parse_override(item)[0]) for item in overrides or []]
    for item, keys in zip(overrides or [], typed, strict=True):
        for n in range(1, len(keys) + 1):
            lines[keys[:n]] = f"--set {item}"
    if any(k[:1] == ("data",) and k[1:2] != ("fallback",) for k in typed):
        # data.fallback stands in for the recipe's own data location only: a location the
        # user typed must fail with its path, never be replaced by other data.
        if isinstance(raw.get("data"), dict):
            raw["data"].pop("fallback", None)
    return validate_recipe(raw, registry, str(path), lines)


def validate_recipe(
    raw: dict[str, Any],
    registry: Registry,
    source: str = "<recipe>",
    lines: dict[tuple[Any, ...], str] | None = None,
) -> Recipe:
    """Validate a recipe mapping and resolve its components (class and ``Params``)."""
    lines = lines or {}
    problems: list[str] = []
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as exc:
        for e in exc.errors():
            loc = tuple(e["loc"])
            got = (
                "" if e["type"] in ("missing", "extra_forbidden") else f" (got {e.get('input')!r})"
            )
            hint = _closest(loc, _known_keys(loc[:-1])) if e["type"] == "extra_forbidden" else ""
            problems.append(f"{_where(source, lines, loc)}: {_fmt_loc(loc)}: {e['msg']}{got}{hint}")
        recipe = None
    # Component names and params, checked even when the top level had problems.
    resolved = {}
    for loc, family in SLOTS.items():
        spec: Any = raw
        for key in loc:
            spec = spec.get(key) if isinstance(spec, dict) else None
        if isinstance(spec, dict) and isinstance(spec.get("name"), str):
            found = _check_component(registry, family, loc, spec, source, lines)
            if isinstance(found, list):
                problems += found
            else:
                resolved[loc] = found
    if problems or recipe is None:
        raise RecipeError(problems, source)
    for loc, spec in recipe.slots().items():
        spec.resolve(*resolved[loc])
    return recipe


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys the recipe schema accepts at a key path (none where it is free-form)."""
    model: Any = Recipe
    for key in loc:
        field = getattr(model, "model_fields", {}).get(key)
        if field is None:
            return []
        model = next(
            (
                t
                for t in (field.annotation, *getattr(field.annotation, "__args__", ()))
                if isinstance(t, type) and issubclass(t, BaseModel)
            ),
            None,
        )
    return list(getattr(model, "model_fields", {}))


def _closest(loc: tuple[Any, ...], known: list[str]) -> str:
    close = difflib.get_close_matches(str(loc[-1]), known, n=1) if known else []
    return f". Did you mean {close[0]!r}?" if close else ""


def _check_component(
    registry: Registry,
    family: str,
    loc: tuple[Any, ...],
    spec: dict[str, Any],
    source: str,
    lines: dict[tuple[Any, ...], str],
) -> tuple[Any, Any] | list[str]:
    """The component's class and validated ``Params``, or the problems found."""
    try:
        cls = registry.get(family, spec["name"])
    except UnknownComponentError as exc:
        nloc = loc + ("name",)
        return [f"{_where(source, lines, nloc)}: {_fmt_loc(nloc)}: {exc}"]
    params = spec.get("params") or {}
    if not isinstance(params, dict):
        return []  # the schema already reports a non-mapping params
    try:
        return cls, cls.Params.model_validate(params)
    except ValidationError as exc:
        out = []
        for e in exc.errors():
            ploc = loc + ("params",) + tuple(e["loc"])
            quiet = e["type"] in ("missing", "extra_forbidden")
            got = "" if quiet else f" (got {e.get('input')!r})"
            hint = ""
            if e["type"] == "extra_forbidden":
                known = list(cls.Params.model_fields)
                hint = (
                    f"{_closest(ploc, known)}; {family} {spec['name']!r} accepts: "
                    f"{', '.join(known) or '(none)'}"
                )
            out.append(f"{_where(source, lines, ploc)}: {_fmt_loc(ploc)}: {e['msg']}{got}{hint}")
        return out


def recipe_data(recipe: Recipe) -> dict[str, Any]:
    """A resolved recipe as plain data: what :func:`dump_recipe` writes as YAML."""
    data = recipe.model_dump(mode="json")
    if recipe.data.fallback is None:
        data["data"].pop("fallback", None)
    return data


def dump_recipe(recipe: Recipe) -> str:
    """A resolved recipe as flat YAML (no ``base``), every component's params in full."""
    data = recipe_data(recipe)
    made_by = [
        f"#   {'.'.join(loc)}: {spec.name} from {spec.cls.component_package} "
        f"{spec.cls.component_version}".rstrip()
        for loc, spec in recipe.slots().items()
        if spec._cls is not None
    ]
    head = "# Resolved recipe: every default filled in. Components and their packages:\n"
    return (head + "\n".join(made_by) + "\n" if made_by else "") + yaml.safe_dump(
        data, sort_keys=False
    )
