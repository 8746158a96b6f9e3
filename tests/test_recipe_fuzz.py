"""Property test: randomly mutated recipes give validation errors or a valid plan, never a crash."""

from __future__ import annotations

import copy

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from esx.errors import RecipeError
from esx.plugins import build_registry
from esx.recipe import dump_recipe, validate_recipe

REG = build_registry()
BASE = {
    "version": 1,
    "seed": 0,
    "data": {
        "name": "phantom",
        "params": {
            "image_size": 64,
            "n_train": 8,
            "cue": {"strength": 0.9},
            "annotators": [{"kind": "conservative"}],
        },
    },
    "backbone": {"name": "timm", "params": {"arch": "test_resnet"}},
    "explainer": {"name": "gradcam", "params": {"compare_at": "map"}},
    "aggregator": {"name": "magi", "params": {"gen_size": 16}},
    "loss": {"name": "res_g", "params": {"eta": 0.1}},
    "train": {"epochs": 1, "batch_size": 4, "lr": 0.001},
    "eval": {"threshold": 0.5, "explainer": {"name": "deeplift"}},
}

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 10**6)
    | st.floats(allow_nan=True)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


def _apply(recipe, path, op, value, key):
    if not path:
        return value if op == "replace" else recipe
    parent = recipe
    for p in path[:-1]:
        parent = parent[p]
    last = path[-1]
    if op == "replace":
        parent[last] = value
    elif op == "delete":
        del parent[last]
    elif isinstance(parent[last], dict):
        parent[last][key] = value
    return recipe


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_recipes_never_crash(data):
    recipe = copy.deepcopy(BASE)
    for _ in range(data.draw(st.integers(1, 3))):
        paths = list(_paths(recipe))
        path = data.draw(st.sampled_from(paths))
        op = data.draw(st.sampled_from(["replace", "delete", "add"]))
        recipe = _apply(recipe, path, op, data.draw(values), data.draw(st.text(max_size=6)))
    try:
        r = validate_recipe(recipe if isinstance(recipe, dict) else {"x": recipe}, REG)
    except RecipeError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)
        return
    dump_recipe(r)
    for spec in r.slots().values():  # every slot resolved: its class and validated params
        assert isinstance(spec.params, spec.cls.Params)
