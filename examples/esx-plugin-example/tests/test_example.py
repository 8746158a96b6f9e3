"""The example plugin's own tests, written with esx.testing."""

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
    """Stateless, so its checkpoint needs nothing beyond its parameters; the check would
    catch a generator of its own left out of get_extra_state. The plugin must be
    installed (pip install -e .) for its name to resolve."""
    check_resume(tmp_path, {"aggregator": {"name": "soft_vote"}})
