"""esx.masks: the vote every consensus uses and the paper's boundary noise."""

from __future__ import annotations

import numpy as np
import torch

from esx.masks import boundary_noise, vote


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


def test_vote_of_one_annotator_is_its_mask_where_valid():
    g = torch.Generator().manual_seed(2)
    m = (torch.rand(6, 1, 8, 8, generator=g) > 0.5).float()
    valid = torch.tensor([[True], [False], [True], [True], [False], [True]])
    for threshold in (0.01, 0.5, 1.0):
        got = vote(m, valid, threshold)
        for i in range(6):
            ref = (m[i][valid[i]].numpy().mean(0) >= threshold) if valid[i] else np.zeros((8, 8))
            assert (got[i, 0].numpy() == ref).all()


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
