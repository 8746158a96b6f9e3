"""The example plugin's own tests, written with esx.testing."""

from esx_plugin_example import SoftVote, SquaredError

from esx.testing import check_aggregator, check_loss


def test_soft_vote_contract():
    check_aggregator(SoftVote)
    check_aggregator(SoftVote, {"sharpen": 2.0})


def test_squared_error_contract():
    check_loss(SquaredError)
