"""Localisation metrics against Quantus and scikit-learn, and on hand-made maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from esx.metrics import LOCALISATION, localisation, summarise_localisation

quantus = pytest.importorskip("quantus", reason="quantus (the test extra) is the oracle here")

COL = {k: i for i, k in enumerate(LOCALISATION)}


def _case(n=12, size=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    maps = torch.rand(n, size, size, generator=g) * 2 - 0.5  # some negative attribution
    truth = torch.zeros(n, size, size)
    for i in range(n):
        r, c = torch.randint(2, size - 6, (2,), generator=g).tolist()
        h, w = torch.randint(1, 6, (2,), generator=g).tolist()
        truth[i, r : r + h, c : c + w] = 1
    return maps, truth


def test_epg_equals_quantus_relevance_mass_on_positive_attribution():
    maps, truth = _case()
    ours = localisation(maps, truth, 0.5)[:, COL["epg"]].numpy()
    a = maps.clamp_min(0).numpy()[:, None]
    s = truth.numpy()[:, None]
    theirs = quantus.RelevanceMassAccuracy(disable_warnings=True).evaluate_batch(
        a_batch=a, s_batch=s
    )
    np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_pointing_game_equals_quantus():
    maps, truth = _case(seed=1)
    # plant the maximum inside the mask in half of the images
    for i in range(0, len(maps), 2):
        r, c = truth[i].nonzero()[0].tolist()
        maps[i, r, c] = 5
    ours = localisation(maps, truth, 0.5)[:, COL["pointing"]].numpy()
    theirs = quantus.PointingGame(disable_warnings=True).evaluate_batch(
        a_batch=maps.numpy()[:, None], s_batch=truth.numpy()[:, None]
    )
    np.testing.assert_array_equal(ours, np.asarray(theirs, dtype=float))
    assert ours[::2].all()


def test_pr_auc_equals_sklearn_average_precision():
    maps, truth = _case(seed=2)
    ours = localisation(maps, truth, 0.5)[:, COL["pr_auc"]].numpy()
    theirs = [
        average_precision_score(t.flatten().numpy(), m.flatten().double().numpy())
        for m, t in zip(maps, truth, strict=True)
    ]
    np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_hand_made_maps():
    truth = torch.zeros(1, 8, 8)
    truth[0, 2:4, 2:4] = 1  # 4 of 64 pixels
    inside = truth.clone()
    outside = torch.zeros(1, 8, 8)
    outside[0, 6, 6] = 1
    row = localisation(inside, truth, 0.5)[0]
    assert row[COL["epg"]] == 1 and row[COL["pointing"]] == 1 and row[COL["pr_auc"]] == 1
    assert row[COL["iou"]] == 1 and row[COL["area"]] == pytest.approx(4 / 64)
    row = localisation(outside, truth, 0.5)[0]
    assert row[COL["epg"]] == 0 and row[COL["pointing"]] == 0 and row[COL["iou"]] == 0
    # half the energy inside: 0.5; a negative value outside does not count
    half = inside.clone()
    half[0, 7, 0], half[0, 0, 7] = 2, -3
    assert localisation(half, truth, 0.5)[0, COL["epg"]] == pytest.approx(4 / 6)
    # a constant map points nowhere; an all-zero one has no energy
    zero = torch.zeros(1, 8, 8)
    assert localisation(zero, truth, 0.5)[0, COL["pointing"]] == 0
    assert localisation(zero, truth, 0.5)[0, COL["epg"]] == 0


def test_pointing_tolerance():
    truth = torch.zeros(1, 16, 16)
    truth[0, 5:7, 5:7] = 1
    peak = torch.zeros(1, 16, 16)
    peak[0, 6, 9] = 1  # 3 px right of the mask's last column (6)
    hit = lambda tol: localisation(peak, truth, 0.5, tol)[0, COL["pointing"]].item()  # noqa: E731
    assert hit(0) == 0 and hit(2) == 0 and hit(3) == 1
    diag = torch.zeros(1, 16, 16)
    diag[0, 9, 9] = 1  # (3, 3) from the corner (6, 6): Euclidean 4.24
    assert localisation(diag, truth, 0.5, 4)[0, COL["pointing"]] == 0
    assert localisation(diag, truth, 0.5, 4.3)[0, COL["pointing"]] == 1


def test_maps_are_upsampled_to_the_mask():
    truth = torch.zeros(1, 16, 16)
    truth[0, :8, :8] = 1
    coarse = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    row = localisation(coarse, truth, 0.5)[0]
    assert row[COL["pointing"]] == 1 and 0.5 < row[COL["epg"]] < 1


def test_size_normalised_and_by_size():
    truth = torch.zeros(2, 10, 10)
    truth[0, :1, :1] = 1  # 1 px
    truth[1, :5, :5] = 1  # 25 px
    maps = torch.ones(2, 10, 10)  # uniform: EPG is just the area
    s = summarise_localisation(localisation(maps, truth, 0.5))
    assert s["epg_small"] == pytest.approx(0.01) and s["epg_large"] == pytest.approx(0.25)
    assert s["epg_ratio"] == pytest.approx(1.0)  # uniform maps: no better than chance
    assert s["mask_area"] == pytest.approx(0.13)


def test_a_run_measures_both_explainers_and_evaluate_remeasures(tmp_path):
    import json

    import yaml
    from typer.testing import CliRunner

    from esx.cli import app

    from conftest import tiny

    recipe = tiny()
    recipe["eval"] = {"overlays": 0, "explainer": {"name": "captum_gradcam"}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    run = tmp_path / "run"
    res = CliRunner().invoke(app, ["run", str(tmp_path / "r.yaml"), "--out", str(run), "--quiet"])
    assert res.exit_code == 0, res.output
    m = json.loads((run / "metrics.json").read_text())
    both = m["explanations"]
    assert set(both) == {"captum_gradcam", "gradcam"} and m["explanation"] == both["captum_gradcam"]
    for k in ("epg", "epg_ratio", "pointing", "pr_auc", "iou"):  # the same maps, two ways
        assert both["gradcam"][k] == pytest.approx(both["captum_gradcam"][k], abs=1e-4), k
    assert both["gradcam"]["images"] > 0 and 0 <= both["gradcam"]["epg"] <= 1

    # a run measured by an older esx: the new metrics missing; esx evaluate restores them
    old = dict(m, explanation={"iou": m["explanation"]["iou"]})
    old.pop("explanations")
    (run / "metrics.json").write_text(json.dumps(old))
    res = CliRunner().invoke(app, ["evaluate", str(tmp_path)])
    assert res.exit_code == 0, res.output
    again = json.loads((run / "metrics.json").read_text())
    assert again["explanations"] == both and again["test"] == m["test"]
    assert "esx evaluate" in again["run"]["explanation_measured_by"]

    # weights that are not the run's: refused, nothing written
    again["test"]["accuracy"] = 0.123
    (run / "metrics.json").write_text(json.dumps(again))
    res = CliRunner().invoke(app, ["evaluate", str(run)])
    assert res.exit_code == 1 and "recorded 0.123" in " ".join(res.output.split())
