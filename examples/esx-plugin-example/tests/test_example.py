"""The example plugin's own tests, written with esx.testing."""

from pathlib import Path

import yaml
from esx_plugin_example import SoftVote, SquaredError

from esx.testing import check_aggregator, check_loss, check_resume, context, tiny_batch


def test_soft_vote_contract():
    check_aggregator(SoftVote)
    check_aggregator(SoftVote, {"sharpen": 2.0})


def test_squared_error_contract():
    check_loss(SquaredError)


def test_soft_vote_reports_a_table():
    agg = SoftVote(SoftVote.Params(), context())
    report = agg.report([tiny_batch()], "cpu")
    assert 0 < report["mean_marked_target"] <= 1
    (table,) = agg.tables(report)
    assert table.rows == [[1.0, report["mean_marked_target"]]]


def test_soft_vote_resumes_exactly(tmp_path):
    """The plugin's own recipe, interrupted after its first epoch and resumed, ends like an
    uninterrupted run. Its components are stateless, so their checkpoint needs nothing
    beyond their parameters; the check would catch a generator of their own left out of
    get_extra_state. The plugin must be installed (pip install -e .) for its names to
    resolve."""
    recipe = yaml.safe_load((Path(__file__).parents[1] / "recipe.yaml").read_text())
    check_resume(tmp_path, recipe)
