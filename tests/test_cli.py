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


def _tables(tmp_path, gt_rows, pred_rows):
    gt, pred = tmp_path / "gt.csv", tmp_path / "pred.csv"
    pd.DataFrame(gt_rows, columns=["video_id", "label", "start", "end"]).to_csv(gt, index=False)
    pd.DataFrame(pred_rows, columns=["video_id", "label", "start", "end", "score"]).to_csv(pred, index=False)
    return gt, pred


def test_evaluate_warns_when_no_prediction_video_is_in_the_gt(tmp_path):
    """Predictions for other video ids (another split, another naming) scored a silent 0.0."""
    gt, pred = _tables(tmp_path, [("v1", "a", 1.0, 2.0)], [("video_v1", "a", 1.0, 2.0, 0.9)])
    result = _onpoint("evaluate", "--gt", str(gt), "--pred", str(pred), "--tiou", "0.5")
    assert result.returncode == 0 and json.loads(result.stdout)["average"] == 0.0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Warning:") and "'video_v1'" in lines[0], result.stderr
    assert str(pred) in lines[0] and str(gt) in lines[0] and "missed" in lines[0]


def test_evaluate_warns_about_a_gt_class_without_predictions(tmp_path):
    gt, pred = _tables(tmp_path, [("v1", "a", 1.0, 2.0), ("v1", "zz", 5.0, 7.0)], [("v1", "a", 1.0, 2.0, 0.9)])
    result = _onpoint("evaluate", "--gt", str(gt), "--pred", str(pred), "--tiou", "0.5")
    assert result.returncode == 0 and json.loads(result.stdout)["mAP"]["0.5"] == 50.0
    assert result.stderr.startswith("Warning:") and "'zz'" in result.stderr and "AP 0" in result.stderr


def test_evaluate_empty_gt_errors_name_the_file(tmp_path):
    gt, pred = _tables(tmp_path, [], [("v1", "a", 1.0, 2.0, 0.9)])
    result = _onpoint("evaluate", "--gt", str(gt), "--pred", str(pred))
    assert result.returncode == 1 and result.stderr.startswith(f"Error: {gt}: no ground-truth segments"), result.stderr
    gt, pred = _tables(tmp_path, [("v1", "a", 1.0, 2.0)], [("v1", "a", 1.0, 2.0, 0.9)])
    videos = tmp_path / "videos.parquet"
    pd.DataFrame({"video_id": ["v1"], "subset": ["train"]}).to_parquet(videos)
    result = _onpoint("evaluate", "--gt", str(gt), "--pred", str(pred), "--videos", str(videos))
    assert result.returncode == 1 and result.stderr.startswith(f"Error: {videos}: no video of subset 'test'"), result.stderr
    pd.DataFrame({"video_id": ["v2"], "subset": ["test"]}).to_parquet(videos)
    result = _onpoint("evaluate", "--gt", str(gt), "--pred", str(pred), "--videos", str(videos))
    assert result.returncode == 1 and result.stderr.startswith(f"Error: {gt}: no ground-truth segments"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
