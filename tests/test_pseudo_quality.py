"""scripts/pseudo_quality.py --by-duration: recall per ground-truth duration bin."""

import pandas as pd
import pytest

from onpoint_core.errors import OnPointError
from tests.conftest import load_file


@pytest.fixture(scope="module")
def script():
    return load_file("scripts/pseudo_quality.py")


def test_recall_by_duration_counts_each_bin_on_its_own(script):
    """Two short actions (one found), two long ones (both found), one long one of another class
    found under the wrong class: the short bin has recall 50, the long bin 66.7, with their shares."""
    gt = pd.DataFrame({"video_id": ["v"] * 5, "label": [0, 0, 1, 1, 2],
                       "start": [0.0, 10.0, 20.0, 40.0, 60.0], "end": [1.0, 11.0, 28.0, 48.0, 70.0]})
    found = pd.DataFrame({"video_id": ["v"] * 4, "label": [0, 1, 1, 1],
                          "start": [0.0, 20.0, 40.5, 60.0], "end": [1.0, 28.0, 48.0, 70.0]})
    out = script.recall_by_duration(gt, found, [0.0, 2.0, float("inf")], 0.5)
    assert out == {"0-2 s": {"share": 40.0, "recall": 50.0}, "2-inf s": {"share": 60.0, "recall": pytest.approx(66.7)}}
    empty = script.recall_by_duration(gt, found, [0.0, 0.5, 2.0], 0.5)
    assert empty["0-0.5 s"] == {"share": 0.0, "recall": None}


@pytest.mark.parametrize("text", ["0,x", "3,1", "5"])
def test_bins_must_be_increasing_numbers(script, text):
    with pytest.raises(OnPointError, match="--bins"):
        script.parse_bins(text)
    assert script.parse_bins("0,1.3,inf") == [0.0, 1.3, float("inf")]
