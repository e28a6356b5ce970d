import sys
from pathlib import Path

import pytest

# the pcap builders of tests/sources (hand-made frames for unit tests of one parser)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sources"))


@pytest.fixture
def compiled():
    """The compiled packet path, or a failure: CI builds it (`make setup`), so a missing
    extension there is a defect, not a skip."""
    from msewatch import fastpath

    assert fastpath.available(), fastpath.status()
    return fastpath
