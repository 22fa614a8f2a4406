"""ActivityNet JSON in and out: `onpoint evaluate` scores the same tables identically whether they
come as Parquet / CSV or as ActivityNet's {"database": ...} / {"results": ...} files, `onpoint
convert` goes both ways, and a bad file stops with one line naming the file and the entry."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from onpoint_core.cli import main
from onpoint_core.evaluation.activitynet import database_json, read_table, results_json
from tests.test_evaluation import random_tables


def cli(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result


def same_numbers(a, b):
    """Equal results up to float summation order (the mean over classes follows the GT's row order,
    and a JSON file groups rows by video): 1e-12 relative."""
    if isinstance(a, dict):
        return isinstance(b, dict) and set(a) == set(b) and all(same_numbers(a[k], b[k]) for k in a)
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=1e-12, abs=1e-12)
    return a == b


def evaluate(gt, pred, *extra):
    result = cli("evaluate", "--gt", gt, "--pred", pred, *extra)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def tables(tmp_path):
    """Random GT and predictions (with gen_time) of 8 videos, as Parquet, plus a videos table in
    which v7 has no GT (a video of the evaluation set where every detection is a false positive)."""
    # no tied scores: equal scores rank in table order, and a JSON file groups its rows by video
    gt, pred = random_tables(np.random.default_rng(3), n_videos=8, n_classes=4, n_gt=60, n_pred=150,
                             tie_scores=False)
    gt = gt[gt.video_id != "v7"].reset_index(drop=True)
    videos = pd.DataFrame({"video_id": [f"v{i}" for i in range(8)] + ["w0"],
                           "subset": ["test"] * 8 + ["train"], "duration": 240.0})
    gt.to_parquet(tmp_path / "gt.parquet")
    pred.to_parquet(tmp_path / "pred.parquet")
    videos.to_parquet(tmp_path / "videos.parquet")
    return tmp_path, gt, pred, videos


def test_evaluate_gives_the_same_numbers_for_parquet_and_activitynet_json(tables):
    folder, gt, pred, videos = tables
    (folder / "gt.json").write_text(json.dumps(database_json(gt, videos)))
    (folder / "pred.json").write_text(json.dumps(results_json(pred)))
    flat = evaluate(folder / "gt.parquet", folder / "pred.parquet", "--videos", folder / "videos.parquet")
    both = evaluate(folder / "gt.json", folder / "pred.json")            # the subset comes from the database
    mixed = evaluate(folder / "gt.parquet", folder / "pred.json", "--videos", folder / "videos.parquet")
    assert same_numbers(flat, both) and same_numbers(flat, mixed)
    assert flat["num_pred"] == len(pred) and flat["aedt"] is not None   # gen_time travelled through the JSON
    # the database's subset decides which videos count: v7's detections are false positives in both
    assert flat["num_gt"] == len(gt)


def test_convert_round_trips_both_layouts(tables):
    folder, gt, pred, videos = tables
    assert cli("convert", folder / "pred.parquet", folder / "pred.json").exit_code == 0
    assert cli("convert", folder / "pred.json", folder / "back.parquet").exit_code == 0
    back = pd.read_parquet(folder / "back.parquet")
    cols = ["video_id", "label", "start", "end", "score", "gen_time"]
    key = ["video_id", "label", "start", "score"]
    pd.testing.assert_frame_equal(back[cols].sort_values(key).reset_index(drop=True),
                                  pred[cols].sort_values(key).reset_index(drop=True))
    data = json.loads((folder / "pred.json").read_text())
    assert set(data) == {"version", "results", "external_data"}
    entry = next(iter(data["results"].values()))[0]
    assert set(entry) == {"label", "score", "segment", "gen_time"}
    # ground truth needs subset and duration per video to become a database
    refused = cli("convert", folder / "gt.parquet", folder / "gt.json")
    assert refused.exit_code == 1 and "--videos" in refused.output and len(refused.output.strip().splitlines()) == 1
    assert cli("convert", folder / "gt.parquet", folder / "gt.json", "--videos", folder / "videos.parquet").exit_code == 0
    database = json.loads((folder / "gt.json").read_text())["database"]
    assert set(database) == set(videos.video_id) and database["v7"]["annotations"] == []
    assert database["w0"]["subset"] == "train" and database["v0"]["duration"] == 240.0
    assert cli("convert", folder / "gt.json", folder / "gt.csv", "--subset", "test").exit_code == 0
    again = pd.read_csv(folder / "gt.csv", dtype={"video_id": str})
    assert len(again) == len(gt) and np.allclose(np.sort(again.start), np.sort(gt.start))


def test_bad_activitynet_files_stop_with_one_line_naming_file_and_entry(tables):
    folder, gt, pred, videos = tables
    (folder / "gt.json").write_text(json.dumps(database_json(gt, videos)))
    (folder / "pred.json").write_text(json.dumps(results_json(pred)))

    def one_line(result, *words):
        assert result.exit_code == 1, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.output, result.output
        for word in words:
            assert word in lines[0], lines[0]

    one_line(cli("evaluate", "--gt", folder / "pred.json", "--pred", folder / "gt.json"), "pred.json", "swapped")
    one_line(cli("evaluate", "--gt", folder / "gt.json", "--pred", folder / "pred.json", "--subset", "validation"),
             "gt.json", "'validation'", "['test', 'train']")
    broken = results_json(pred)
    broken["results"]["v2"][1]["segment"] = [3.0]
    (folder / "broken.json").write_text(json.dumps(broken))
    one_line(cli("evaluate", "--gt", folder / "gt.json", "--pred", folder / "broken.json"), "broken.json", "video v2",
             "entry 1", "[start, end]")
    broken = results_json(pred)
    broken["results"]["v1"][0]["score"] = "high"
    (folder / "broken.json").write_text(json.dumps(broken))
    one_line(cli("evaluate", "--gt", folder / "gt.json", "--pred", folder / "broken.json"), "video v1", "score")
    reversed_ = results_json(pred)
    reversed_["results"]["v3"][0]["segment"] = [9.0, 2.0]
    (folder / "broken.json").write_text(json.dumps(reversed_))
    one_line(cli("evaluate", "--gt", folder / "gt.json", "--pred", folder / "broken.json"), "ends before it starts")
    (folder / "broken.json").write_text('{"results": {"v1": [')
    one_line(cli("evaluate", "--gt", folder / "gt.json", "--pred", folder / "broken.json"), "broken.json", "not JSON")


def test_real_thumos_gt_full_json_is_read_as_ground_truth(shared_data, tmp_path):
    """HR-Pro's gt_full.json is an ActivityNet database: its Test subset read directly equals the
    table built from it by hand, and perfect predictions score 100 through `onpoint evaluate`."""
    path = shared_data / "thumos14" / "gt_full.json"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    database = json.loads(path.read_text())["database"]
    by_hand = [(v, a["label"], float(a["segment"][0]), float(a["segment"][1]))
               for v, e in database.items() if e["subset"] == "Test" for a in e["annotations"]]
    gt = read_table(path, "segments", subset="test")
    assert len(gt) == len(by_hand) > 3000
    assert sorted(map(tuple, gt[["video_id", "label", "start", "end"]].itertuples(index=False))) == sorted(by_hand)
    pred = gt.assign(score=np.linspace(1.0, 0.1, len(gt)))
    (tmp_path / "pred.json").write_text(json.dumps(results_json(pred)))
    result = evaluate(path, tmp_path / "pred.json", "--subset", "Test")
    assert result["mAP"]["0.5"] == pytest.approx(100.0) and len(result["per_class"]) == 20


def test_json_lines_in_a_json_file_still_load(tables):
    """Guard: the ActivityNet sniffing parsed every .json file whole, so JSON lines named .json
    (which `onpoint evaluate` read before) failed with "not valid JSON"."""
    folder, gt, pred, videos = tables
    lines = "".join(json.dumps(row) + "\n" for row in pred.to_dict("records"))
    (folder / "pred_lines.json").write_text(lines)
    flat = evaluate(folder / "gt.parquet", folder / "pred.parquet", "--videos", folder / "videos.parquet")
    again = evaluate(folder / "gt.parquet", folder / "pred_lines.json", "--videos", folder / "videos.parquet")
    assert same_numbers(flat, again)


def test_a_results_file_without_any_detection_scores_zero(tables):
    """Every video listed with an empty list (a model that emitted nothing) reads as an empty table."""
    folder, gt, pred, videos = tables
    (folder / "none.json").write_text(json.dumps(results_json(pred.iloc[:0], videos=list(videos.video_id))))
    result = evaluate(folder / "gt.parquet", folder / "none.json", "--videos", folder / "videos.parquet")
    assert result["num_pred"] == 0 and result["avg_0.1_0.7"] == 0.0
