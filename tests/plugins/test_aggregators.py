"""Aggregators: consensus, oracle, random, meanloss, and the identity-free EM and STAPLE
(MAGI, the largest, has tests/plugins/test_magi.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from esx.errors import DataError
from esx.interfaces import BuildContext, DataInfo
from esx.testing import tiny_batch
from esx_aggregators.consensus import Consensus
from esx_aggregators.em import Em
from esx_aggregators.meanloss import MeanLoss
from esx_aggregators.oracle import Oracle
from esx_aggregators.random_mask import RandomMask
from esx_aggregators.staple import Staple, staple

CTX = BuildContext(DataInfo("t", True, 1, 2, (8, 8), 4, True))


def _numpy_em(masks: np.ndarray, iterations: int, prior: float = 0.5, eps: float = 1e-3):
    post = masks.mean(0)
    for _ in range(iterations):
        err = np.clip(np.abs(masks - post).mean(axis=(1, 2)), eps, 1 - eps)
        w = np.log((1 - err) / err)
        logit = np.log(prior / (1 - prior)) + ((2 * masks - 1) * w[:, None, None]).sum(0)
        post = 1 / (1 + np.exp(-logit))
    return post


def test_em_matches_a_direct_implementation_and_outvotes_the_outlier():
    rng = np.random.default_rng(0)
    truth = np.zeros((8, 8))
    truth[2:6, 2:6] = 1
    good = [np.where(rng.random((8, 8)) < 0.05, 1 - truth, truth) for _ in range(2)]
    bad = (rng.random((8, 8)) < 0.5).astype(float)  # a mask of pure noise
    masks = np.stack([good[0], good[1], bad, np.zeros((8, 8))])
    valid = torch.tensor([[True, True, True, False]])
    em = Em(Em.Params(iterations=10), CTX)
    post = em.posterior(torch.tensor(masks, dtype=torch.float64)[None], valid)[0, 0].numpy()
    ref = _numpy_em(masks[:3], 10)
    assert np.allclose(post, ref, atol=1e-8)
    # the noisy third mask ends with the largest error; the result stays near the truth
    err = np.abs(masks[:3] - post).mean(axis=(1, 2))
    assert err[2] > 3 * max(err[0], err[1])
    assert ((post >= 0.5) == truth).mean() > 0.9


def test_em_rows_without_masks_are_unsupervised():
    b = tiny_batch(b=4, annotators=4, size=8)
    out = Em(Em.Params(hard=True), CTX)(b).targets
    assert (out.weights[:, 0] == b.annotated.float()).all()
    assert (out.masks[~b.annotated] == 0).all()
    assert set(out.masks.unique().tolist()) <= {0.0, 1.0}


def _itk_staple(sitk, masks: np.ndarray) -> np.ndarray:
    f = sitk.STAPLEImageFilter()
    f.SetForegroundValue(1.0)
    f.SetMaximumIterations(100)
    ref = f.Execute([sitk.GetImageFromArray(m.astype(np.uint8)) for m in masks])
    return sitk.GetArrayFromImage(ref)


def test_staple_equals_simpleitk_and_guards_empty_images():
    sitk = pytest.importorskip("SimpleITK")
    b = tiny_batch(b=4, annotators=4, size=16)
    b.masks[1] = 0  # a positive whose masks are all empty
    out = Staple(Staple.Params(), CTX)(b).targets.masks
    for i in range(4):
        valid = b.mask_valid[i]
        if not valid.any() or b.masks[i][valid].sum() == 0:
            assert out[i].sum() == 0
            continue
        ref = _itk_staple(sitk, b.masks[i][valid].numpy())
        assert np.allclose(out[i, 0].numpy(), ref, atol=1e-9)


def test_staple_equals_simpleitk_on_noisy_panels_batched():
    """Noisy, outlier and missing masks, all images of the batch at once against ITK one
    image at a time (its start, updates and per-image stopping rule)."""
    sitk = pytest.importorskip("SimpleITK")
    rng = np.random.default_rng(0)
    n, u, size = 60, 4, 16
    masks = np.zeros((n, u, size, size))
    valid = np.zeros((n, u), bool)
    for i in range(n):
        truth = np.zeros((size, size))
        side = rng.integers(2, 8)
        truth[3 : 3 + side, 4 : 4 + side] = 1
        for j in range(u):
            m = np.where(rng.random((size, size)) < rng.uniform(0, 0.2), 1 - truth, truth)
            if rng.random() < 0.2:  # an annotator who marks another object
                m = np.zeros((size, size))
                m[10:14, 10:14] = 1
            masks[i, j] = m
        valid[i, : rng.integers(1, u + 1)] = True
    post = staple(torch.tensor(masks, dtype=torch.float32), torch.tensor(valid))
    worst = max(
        np.abs(post[i].numpy() - _itk_staple(sitk, masks[i][valid[i]])).max() for i in range(n)
    )
    assert worst < 1e-9


def test_staple_hand_cases():
    # two masks that agree: the posterior is the mask (p = q = 1 after one step)
    m = torch.zeros(1, 2, 4, 4)
    m[0, :, 1:3, 1:3] = 1
    assert torch.equal(staple(m, torch.ones(1, 2, dtype=torch.bool))[0], m[0, 0].double())
    # every mask full: ITK divides 0 by 0; the target is the masks' mean (all ones)
    full = torch.ones(1, 3, 4, 4)
    assert torch.equal(
        staple(full, torch.ones(1, 3, dtype=torch.bool)), torch.ones(1, 4, 4).double()
    )
    # a missing mask does not count: the one valid mask is the target
    m2 = m.clone()
    m2[0, 1] = 1 - m2[0, 1]
    out = staple(m2, torch.tensor([[True, False]]))
    assert torch.equal(out[0], m[0, 0].double())
    with pytest.raises(DataError, match="up to 62 masks"):
        staple(torch.zeros(1, 63, 2, 2), torch.ones(1, 63, dtype=torch.bool))


def test_consensus_weights_only_annotated():
    b = tiny_batch()
    out = Consensus(Consensus.Params(), CTX)(b)
    assert out.targets.masks.shape == (4, 1, 32, 32)
    assert out.targets.weights[:, 0].tolist() == b.annotated.float().tolist()


def test_oracle_needs_truth():
    with pytest.raises(DataError, match="true explanation masks"):
        Oracle(Oracle.Params(), BuildContext(DataInfo("real", False, 1, 2, (4, 4), 3, False)))
    b = tiny_batch()
    t = Oracle(Oracle.Params(), CTX)(b).targets
    assert torch.equal(t.masks, b.truth)


def test_meanloss_weights_and_random_draws():
    b = tiny_batch(b=6, annotators=3, size=8)
    t = MeanLoss(MeanLoss.Params(), CTX)(b).targets
    v = b.mask_valid.float()
    assert torch.allclose(t.weights, v / v.sum(1, keepdim=True).clamp_min(1))
    agg = RandomMask(RandomMask.Params(), CTX)
    draws = [agg(b).targets.masks for _ in range(20)]
    for i in range(6):
        if not b.annotated[i]:
            assert all(d[i].sum() == 0 for d in draws)
            continue
        valid_masks = [b.masks[i, u] for u in range(3) if b.mask_valid[i, u]]
        for d in draws:  # each draw is one of the image's valid masks
            assert any(torch.equal(d[i, 0], m) for m in valid_masks)
    # seeded: a new aggregator with the same seed draws the same sequence
    again = RandomMask(RandomMask.Params(), CTX)
    assert all(torch.equal(again(b).targets.masks, d) for d in draws)
