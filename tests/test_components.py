"""Aggregators and losses: hand-computed cases, and every pair composed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from esx.errors import DataError
from esx.interfaces import BuildContext, DataInfo
from esx.masks import boundary_noise, vote
from esx.types import Targets
from esx_aggregators import Consensus, Oracle
from esx_losses import Gradia, NoExplanationLoss

from conftest import make_batch

CTX = BuildContext(DataInfo("t", True, 1, 2, (4, 4), 3, True))


def test_vote_hand_drawn():
    m = torch.tensor(
        [
            [[1, 1], [0, 0]],
            [[1, 0], [1, 0]],
            [[0, 0], [0, 1]],
        ],
        dtype=torch.float,
    )[None]
    valid = torch.tensor([[True, True, True]])
    # votes: [[2,1],[1,1]] of 3 -> only the top-left reaches 0.5
    assert vote(m, valid).squeeze().tolist() == [[1, 0], [0, 0]]
    # only the first two valid: ties (1 of 2) count as foreground
    valid2 = torch.tensor([[True, True, False]])
    assert vote(m, valid2).squeeze().tolist() == [[1, 1], [1, 0]]
    assert vote(m, torch.tensor([[False] * 3])).sum() == 0


def test_vote_matches_mean_rule_randomly():
    g = torch.Generator().manual_seed(1)
    m = (torch.rand(5, 4, 8, 8, generator=g) > 0.5).float()
    valid = torch.rand(5, 4, generator=g) > 0.3
    valid[:, 0] = True
    for i in range(5):
        ref = m[i][valid[i]].numpy().mean(0) >= 0.5  # pylidc consensus(clevel=0.5)
        assert (vote(m[i : i + 1], valid[i : i + 1])[0, 0].numpy() == ref).all()


def test_consensus_weights_only_annotated():
    b = make_batch()
    out = Consensus(Consensus.Params(), CTX)(b)
    assert out.targets.masks.shape == (4, 1, 32, 32)
    assert out.targets.weights[:, 0].tolist() == b.annotated.float().tolist()


def test_oracle_needs_truth():
    with pytest.raises(DataError, match="true explanation masks"):
        Oracle(Oracle.Params(), BuildContext(DataInfo("real", False, 1, 2, (4, 4), 3, False)))
    b = make_batch()
    t = Oracle(Oracle.Params(), CTX)(b).targets
    assert torch.equal(t.masks, b.truth)


def test_gradia_hand_computed():
    maps = torch.tensor([[[0.0, 0.5], [1.0, 0.25]]])
    target = torch.tensor([[[[0.0, 1.0], [1.0, 0.0]]]])
    # |0-0| + |0.5-1| + |1-1| + |0.25-0| = 0.75 over 4 pixels
    loss = Gradia(Gradia.Params(), CTX)(maps, Targets(target, torch.ones(1, 1)))
    assert loss.item() == pytest.approx(0.1875)
    # two targets weighted 0.25 / 0.75; the second is all ones: mean |m-1| = 0.5625
    two = torch.cat([target, torch.ones_like(target)], dim=1)
    loss2 = Gradia(Gradia.Params(), CTX)(maps, Targets(two, torch.tensor([[0.25, 0.75]])))
    assert loss2.item() == pytest.approx(0.25 * 0.1875 + 0.75 * 0.5625)
    # unannotated pixels are ignored
    ann = torch.tensor([[[[True, True], [False, False]]]])
    loss3 = Gradia(Gradia.Params(), CTX)(maps, Targets(target, torch.ones(1, 1), ann))
    assert loss3.item() == pytest.approx(0.25)


def test_none_loss_is_zero():
    loss = NoExplanationLoss(NoExplanationLoss.Params(), CTX)
    assert not loss.uses_explanation
    assert loss(torch.rand(2, 4, 4), Targets(torch.rand(2, 1, 4, 4), torch.ones(2, 1))) == 0


def test_boundary_noise_changes_only_the_boundary():
    mask = np.zeros((40, 40), bool)
    mask[10:30, 10:30] = True
    rng = np.random.default_rng(0)
    out = boundary_noise(mask, rng, steps=1, flip=1.0)
    diff = out ^ mask
    assert diff.any()
    # a single pass touches only pixels within 1 px of the original boundary
    from scipy import ndimage

    band = ndimage.binary_dilation(mask) & ~ndimage.binary_erosion(mask)
    assert not (diff & ~band).any()
