"""Simulated annotator panels (esx.panels): the phantom's published masks unchanged after
the move, the noise dials' stated rules, and the panel dataset around any dataset with a
true mask."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from esx import panels
from esx.panels import AnnotatorSpec

from conftest import ROOT

sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
import phantom_masks  # noqa: E402

GOLDEN = json.loads((ROOT / "tests" / "fixtures" / "phantom_masks.json").read_text())


@pytest.mark.parametrize("key", sorted(GOLDEN), ids=range(len(GOLDEN)))
def test_the_phantoms_archived_runs_keep_their_masks_bit_for_bit(key):
    """Hashes written before the annotators moved to esx.panels, for the data of every
    archived run (docs/run_metrics) and every recipe: masks, slots, annotators, hidden."""
    assert phantom_masks.mask_hash(json.loads(key)) == GOLDEN[key]


def test_the_golden_hashes_cover_every_archived_data_block():
    keys = {json.dumps(p, sort_keys=True) for p in phantom_masks.archived_data()}
    assert keys <= set(GOLDEN) and len(GOLDEN) >= 8


def _disc(size=28, r=5, cy=14, cx=14) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def test_exact_draws_the_truth_and_wrong_object_the_first_distractor():
    truth, rng = _disc(), np.random.default_rng(0)
    decoy = np.zeros_like(truth)
    decoy[:4, :4] = True
    exact = AnnotatorSpec(kind="exact")
    assert (panels.annotate(exact, truth, rng) == truth).all()
    wrong = AnnotatorSpec(kind="wrong_object", strength=2)  # always, where there is one
    empty = np.zeros_like(truth)
    for _ in range(5):
        assert (panels.annotate(wrong, truth, rng, (empty, decoy)) == decoy).all()
    # no distractor in the image: it marks the truth, lightly noisy
    out = panels.annotate(wrong, truth, rng, (empty,))
    assert (out & truth).sum() > 0.6 * truth.sum()


def test_the_wrong_object_dial_has_the_stated_share_of_wrong_annotators():
    assert panels.wrong_share(0.0, 4).tolist() == [0, 0, 0, 0]
    assert panels.wrong_share(0.5, 4).tolist() == [1, 1, 0, 0]
    assert panels.wrong_share(0.375, 4).tolist() == [1, 0.5, 0, 0]
    assert panels.wrong_share(1.0, 4).tolist() == [1, 1, 1, 1]
    truth, rng = _disc(), np.random.default_rng(1)
    decoy = np.zeros_like(truth)
    decoy[-4:, -4:] = True
    wrong = []
    for _ in range(400):
        masks, who, every = panels.draw(
            panels.family_panel("wrong_object", 0.375, rng), truth, rng, (decoy,)
        )
        wrong += [bool((every[a] == decoy).all()) for a in range(4)]
    share = np.mean(np.reshape(wrong, (-1, 4)), axis=0)
    assert share[0] == 1 and share[2] == share[3] == 0 and 0.4 < share[1] < 0.6


def test_level_zero_is_the_truth_in_every_family():
    truth, rng = _disc(), np.random.default_rng(2)
    for family in ("wrong_object", "paper"):
        masks, who, every = panels.draw(panels.family_panel(family, 0.0, rng), truth, rng)
        assert (every == truth).all()
        assert all((masks[s] == truth).all() for s in range(4) if who[s] >= 0)


def test_the_paper_dial_adds_noise_and_missing_masks_with_the_level():
    truth = _disc(size=112, r=12, cy=56, cx=56)
    rng = np.random.default_rng(3)
    err, missing = {}, {}
    for level in (0.25, 1.0):
        e, m = [], []
        for _ in range(60):
            masks, who, every = panels.draw(panels.family_panel("paper", level, rng), truth, rng)
            e.append(np.mean([(every[a] ^ truth).mean() for a in range(4)]))
            m.append((who < 0).mean())
        err[level], missing[level] = np.mean(e), np.mean(m)
    assert err[1.0] > err[0.25] > 0
    assert missing[1.0] > missing[0.25]
    assert abs(missing[1.0] - 0.5) < 0.12  # annotating with chance 1 - 0.5 * level


def test_a_level_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError, match="outside"):
        panels.family_panel("paper", 1.5, np.random.default_rng(0))


def test_the_panel_dataset_annotates_decoy_mnist_with_the_dial(registry):
    from esx.interfaces import BuildContext

    cls = registry.get("dataset", "panel")
    of = {"name": "decoy_mnist", "params": {"n_train": 100, "n_val": 10, "n_test": 10}}

    def share_of_decoys(level: float) -> float:
        ds = cls(cls.Params.model_validate({"of": of, "level": level}), BuildContext())
        assert ds.info.num_annotators == 4 and ds.info.masks_for == "all"
        wrong = total = 0
        for s in (ds.split("train")[i] for i in range(100)):
            assert s.mask_valid.any()  # every image annotated, by at least one
            decoy = s.extras["distractors"][0]
            for u in range(4):
                if s.mask_valid[u]:
                    total += 1
                    wrong += bool((s.masks[u] == decoy).all())
                    exact = bool((s.masks[u] == s.truth[0]).all())
                    assert exact or bool((s.masks[u] == decoy).all())
        return wrong / total

    assert share_of_decoys(0.0) == 0
    assert 0.4 < share_of_decoys(0.5) < 0.6
    assert share_of_decoys(1.0) == 1


def test_the_panel_dataset_is_seeded_and_follows_the_wrapped_data_seed(registry):
    from esx.interfaces import BuildContext

    cls = registry.get("dataset", "panel")

    def masks(seed: int):
        of = {
            "name": "phantom",
            "params": {"image_size": 32, "n_train": 8, "n_val": 4, "n_test": 4, "seed": seed},
        }
        ds = cls(cls.Params.model_validate({"of": of, "level": 0.5}), BuildContext())
        return [ds.split("train")[i].masks for i in range(8)]

    a, b, c = masks(0), masks(0), masks(1)
    assert all((x == y).all() for x, y in zip(a, b, strict=True))
    assert any((x != y).any() for x, y in zip(a, c, strict=True) if x.shape == y.shape)


def test_bad_panels_are_refused_with_the_reason(registry):
    from esx.errors import RecipeError
    from esx.recipe import load_recipe

    def recipe(tmp_params: dict) -> dict:
        return {
            "version": 1,
            "data": {"name": "panel", "params": tmp_params},
            "backbone": {"name": "mnist_mlp"},
            "explainer": {"name": "input_gradient"},
            "aggregator": {"name": "consensus"},
            "loss": {"name": "rrr"},
        }

    import tempfile

    import yaml

    cases = [
        ({"of": {"name": "decoy_mnst"}}, "decoy_mnist"),  # a typo: the closest name
        ({"of": {"name": "decoy_mnist"}, "level": 1.5}, "less than or equal to 1"),
        ({"of": {"name": "decoy_mnist"}, "family": None}, "either family"),
        ({"of": {"name": "panel"}}, "cannot wrap a panel"),
        ({"of": {"name": "decoy_mnist", "params": {"n_train": 7}}}, "n_train is 7"),
    ]
    for params, words in cases:
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            yaml.safe_dump(recipe(params), f)
        with pytest.raises(RecipeError, match=words):
            load_recipe(f.name, registry)


def test_the_panel_dataset_annotates_a_folder_dataset_from_its_truth_masks(registry, tmp_path):
    """Your own data: a folder dataset with a truth/ mask per image is annotated by the
    panel (at level 0 every mask is the truth); one without truth masks is refused."""
    import torch

    from esx.errors import DataError
    from esx.interfaces import BuildContext

    from conftest import make_folder

    root = make_folder(tmp_path / "data")
    cls = registry.get("dataset", "panel")
    of = {"name": "folder", "params": {"root": str(root)}}
    ds = cls(cls.Params.model_validate({"of": of, "level": 0.0}), BuildContext())
    annotated = 0
    for s in (ds.split("train")[i] for i in range(4)):
        for u in range(4):
            if s.mask_valid[u]:
                annotated += 1
                assert torch.equal(s.masks[u], s.truth[0])
    assert annotated > 0
    for f in (root / "truth").iterdir():
        f.unlink()
    (root / "truth").rmdir()
    with pytest.raises(DataError, match="true mask"):
        ds = cls(cls.Params.model_validate({"of": of, "level": 0.0}), BuildContext())
        ds.split("train")[0]
