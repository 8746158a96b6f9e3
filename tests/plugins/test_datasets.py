"""The synthetic phantom: deterministic, with the annotator personalities it promises."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from esx.data import collate, validate_sample
from esx.interfaces import BuildContext
from esx_phantom.dataset import Phantom, PhantomParams


def make(**kw) -> Phantom:
    """The phantom at small sizes with the mixed panel of personalities (design paper)."""
    base = dict(design="paper", image_size=96, n_train=24, n_val=8, n_test=8)
    base.update(kw)
    return Phantom(PhantomParams(**base), BuildContext())


def test_design_fills_what_the_recipe_does_not_give():
    testbed, paper = PhantomParams(), PhantomParams(design="paper")
    sizes = lambda p: (p.image_size, p.n_train, p.n_val, p.n_test)  # noqa: E731
    kinds = lambda p: [(a.kind, a.strength) for a in p.annotators]  # noqa: E731
    assert testbed.design == "testbed" and sizes(testbed) == (112, 200, 200, 400)
    assert kinds(testbed) == [("accurate", 1.0)] + [("wrong_object", 2.0)] * 3
    assert sizes(paper) == (224, 100, 2400, 2400)
    assert [k for k, _ in kinds(paper)] == [
        "conservative",
        "aggressive",
        "boundary_noisy",
        "wrong_object",
    ]
    given = PhantomParams(design="paper", image_size=64, annotators=[{"kind": "accurate"}])
    assert sizes(given) == (64, 100, 2400, 2400) and kinds(given) == [("accurate", 1.0)]
    assert PhantomParams(design="testbed") == testbed
    with pytest.raises(ValueError, match="'testbed' or 'paper'"):
        PhantomParams(design="papr")


def test_deterministic_for_a_seed():
    a, b = make().split("train"), make(cache=False).split("train")
    for i in (0, 5, 17):
        sa, sb = a[i], b[i]
        assert torch.equal(sa.image, sb.image) and torch.equal(sa.masks, sb.masks)
        assert torch.equal(sa.extras["annotator"], sb.extras["annotator"])
    c = make(seed=1).split("train")
    assert not torch.equal(a[0].image, c[0].image)


def test_samples_valid_and_balanced():
    ds = make().split("train")
    labels = [ds[i].label for i in range(len(ds))]
    assert sum(labels) == 12
    for i in range(len(ds)):
        s = ds[i]
        validate_sample(s, f"train[{i}]")
        if s.label == 1:
            assert s.mask_valid.any() and s.truth.any()
            assert set(s.extras["annotator"][s.mask_valid].tolist()) <= {0, 1, 2, 3}
            assert (s.extras["annotator"][~s.mask_valid] == -1).all()
            assert (s.masks[~s.mask_valid] == 0).all()
        else:
            assert not s.mask_valid.any() and not s.truth.any()
    batch = collate([ds[i] for i in range(8)])
    assert batch.masks.shape == (8, 4, 96, 96) and batch.truth.shape == (8, 1, 96, 96)


def test_slots_are_shuffled_and_some_missing():
    ds = make(n_train=80).split("train")
    first_slot_owner = set()
    missing = 0
    for i in range(len(ds)):
        s = ds[i]
        if s.label == 1:
            first_slot_owner.add(int(s.extras["annotator"][0]))
            missing += int((~s.mask_valid).sum())
    assert len(first_slot_owner) >= 3  # slot 0 is not always the same annotator
    assert missing > 0


def _area_ratio(kind: str) -> float:
    p = PhantomParams(
        image_size=128,
        n_train=60,
        n_val=2,
        n_test=2,
        annotators=[{"kind": kind, "p_annotate": 1.0}],
    )
    ds = Phantom(p, BuildContext()).split("train")
    ratios = [
        ds[i].masks[0].sum().item() / ds[i].truth.sum().item()
        for i in range(len(ds))
        if ds[i].label == 1
    ]
    return float(np.mean(ratios))


def test_conservative_smaller_aggressive_larger():
    assert _area_ratio("conservative") < 0.8
    assert _area_ratio("aggressive") > 1.3
    assert 0.7 < _area_ratio("accurate") < 1.3
    assert _area_ratio("tiny") < 0.3


def test_wrong_object_marks_something_else():
    p = PhantomParams(
        image_size=96,
        n_train=60,
        n_val=2,
        n_test=2,
        lookalike_prob=1.0,
        annotators=[{"kind": "wrong_object", "p_annotate": 1.0, "strength": 2.0}],
    )
    ds = Phantom(p, BuildContext()).split("train")
    overlaps = [
        (ds[i].masks[0] * ds[i].truth[0]).sum().item() for i in range(len(ds)) if ds[i].label == 1
    ]
    assert np.mean([o == 0 for o in overlaps]) > 0.8


def marker_seen(image: torch.Tensor) -> bool:
    """The marker is the brightest square in a corner region outside the body."""
    img = image[0]
    regions = [img[:12, :12], img[:12, -12:], img[-12:, :12], img[-12:, -12:]]
    return max(r.max().item() for r in regions) > 2.0


@pytest.mark.parametrize("split, expect_corr", [("train", True), ("test", False)])
def test_cue_correlates_only_in_training(split, expect_corr):
    p = PhantomParams(image_size=64, n_train=200, n_val=2, n_test=200)
    ds = Phantom(p, BuildContext()).split(split)
    corner = [marker_seen(ds[i].image) for i in range(len(ds))]
    labels = np.array([ds[i].label for i in range(len(ds))])
    corner = np.array(corner)
    gap = corner[labels == 1].mean() - corner[labels == 0].mean()
    assert (gap > 0.6) if expect_corr else (abs(gap) < 0.2)


def test_cue_present_matches_the_rendered_image():
    ds = Phantom(PhantomParams(image_size=64, n_train=2, n_val=2, n_test=60), BuildContext()).split(
        "test"
    )
    flags = [ds.cue_present(i) for i in range(len(ds))]
    assert flags == [marker_seen(ds[i].image) for i in range(len(ds))]
    assert 10 < sum(flags) < 50  # both kinds occur
    with pytest.raises(IndexError):
        ds.cue_present(60)


# ------------------------------------------------------------ folder: ids are names
def _folder(tmp_path, extra_rows: list[str]):
    """A valid folder dataset (make_folder) with ``extra_rows`` appended to samples.csv."""
    from conftest import make_folder

    root = make_folder(tmp_path / "data")
    with (root / "samples.csv").open("a") as f:
        f.writelines(row + "\n" for row in extra_rows)
    return root


def _build_folder(root):
    from esx_folder.dataset import FolderDataset, FolderParams

    return FolderDataset(FolderParams(root=str(root), num_annotators=2), BuildContext())


@pytest.mark.parametrize(
    "bad_id",
    ["../../outside/secret", "/etc/passwd", "sub/dir", "sub\\dir", "a*", "a?", ".hidden", ".."],
)
def test_folder_refuses_ids_that_are_not_names(tmp_path, bad_id):
    from esx.errors import DataError

    root = _folder(tmp_path, [f"{bad_id},1,train"])
    line = len((root / "samples.csv").read_text().splitlines())
    with pytest.raises(DataError) as exc:
        _build_folder(root)
    msg = str(exc.value)
    assert f"samples.csv:{line}: id {bad_id!r} refused" in msg and "letters, digits" in msg


def test_folder_reports_every_refused_id_at_once(tmp_path):
    from esx.errors import DataError

    root = _folder(tmp_path, ["a*,1,train", "ok_one,0,train", "../x,0,test", "train0,1,val"])
    with pytest.raises(DataError) as exc:
        _build_folder(root)
    msg = str(exc.value)
    assert msg.startswith("3 refused id(s)")
    assert ":14: id 'a*'" in msg and ":16: id '../x'" in msg and "already on line 2" in msg


def test_folder_refuses_a_link_out_of_the_root(tmp_path):
    from esx.errors import DataError

    root = _folder(tmp_path, [])
    outside = tmp_path / "outside.png"
    outside.write_bytes((root / "images" / "train1.png").read_bytes())
    (root / "images" / "train1.png").unlink()
    (root / "images" / "train1.png").symlink_to(outside)
    with pytest.raises(DataError, match=r"train1.png resolves to .*outside.png, outside the"):
        _build_folder(root)


def test_folder_prefix_ids_get_only_their_own_masks(tmp_path):
    from PIL import Image

    root = _folder(tmp_path, ["a,1,train", "a_1,1,train"])
    image = np.zeros((32, 32), np.uint8)
    for sid in ("a", "a_1"):
        Image.fromarray(image).save(root / "images" / f"{sid}.png")
        Image.fromarray(image).save(root / "truth" / f"{sid}.png")
    left, right = np.zeros((32, 32), np.uint8), np.zeros((32, 32), np.uint8)
    left[:, :8], right[:, 24:] = 255, 255
    Image.fromarray(left).save(root / "masks" / "a_0.png")  # a's slot 0
    Image.fromarray(right).save(root / "masks" / "a_1_0.png")  # a_1's slot 0, not a's
    train = _build_folder(root).split("train")
    by_id = {s.index: s for s in train}
    a, a1 = by_id[len(train) - 2], by_id[len(train) - 1]
    assert a.mask_valid.tolist() == [True, False] and a.masks[0, :, :8].all()
    assert a1.mask_valid.tolist() == [True, False] and a1.masks[0, :, 24:].all()
    assert not a.masks[0, :, 24:].any()


def test_phantom_renders_once_per_process_for_equal_parameters():
    """A sweep's runs share the rendered images of equal data parameters (nothing re-rendered)."""
    p = PhantomParams(image_size=32, n_train=4, n_val=4, n_test=4, seed=7)
    a, b = Phantom(p, BuildContext()), Phantom(p, BuildContext())
    assert a.split("train")[1] is b.split("train")[1]
    other = Phantom(p.model_copy(update={"seed": 8}), BuildContext())
    assert other.split("train")[1] is not a.split("train")[1]
    assert not torch.equal(other.split("train")[1].image, a.split("train")[1].image)
