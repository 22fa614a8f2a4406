"""The `onpoint` console command as a user meets it: JSON out, one-line errors, no tracebacks."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd

from onpoint_core.data.dataset import load_dataset
from onpoint_core.data.synthetic import generate_synthetic
from tests.conftest import tiny_synthetic


def _onpoint(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "onpoint_core.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_evaluate_prints_map_json(tmp_path, raw_params):
    generate_synthetic(tiny_synthetic(raw_params), tmp_path / "d", progress=False)
    ds = load_dataset(tmp_path / "d")
    gt = ds.segments[ds.segments.video_id.isin(ds.video_ids("test"))]
    gt.to_parquet(tmp_path / "gt.parquet")
    # perfect predictions for every second instance, a shifted copy for the others
    pred = gt.copy()
    pred["score"] = np.linspace(1, 0.5, len(pred))
    pred.loc[pred.index[1::2], ["start", "end"]] += 100.0
    pred.to_parquet(tmp_path / "pred.parquet")
    result = _onpoint("evaluate", "--gt", str(tmp_path / "gt.parquet"), "--pred", str(tmp_path / "pred.parquet"),
                      "--tiou", "0.3,0.5")
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout)
    assert set(scores["mAP"]) == {"0.3", "0.5"}
    assert 0 < scores["average"] < 100


def test_bad_input_is_one_line_naming_the_file(tmp_path):
    pred = tmp_path / "pred.parquet"
    pd.DataFrame({"video_id": ["v"], "label": ["a"], "start": [1.0], "end": [np.nan], "score": [1.0]}).to_parquet(pred)
    gt = tmp_path / "gt.parquet"
    pd.DataFrame({"video_id": ["v"], "label": ["a"], "start": [1.0], "end": [2.0]}).to_parquet(gt)
    result = _onpoint("evaluate", "--gt", str(gt), "--pred", str(pred))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert str(pred) in result.stderr and len(result.stderr.strip().splitlines()) == 1

    missing = _onpoint("import", "hat", str(tmp_path), str(tmp_path / "out"))
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert "egtea_annotations_split1.json" in missing.stderr
    assert not (tmp_path / "out").exists()
