"""Perfect heads through the real decode and online NMS (onpoint_core/online/oracle.py).

The distillation-free run decodes its point heads into segments centred on the decoded point.
With the unsigned offset of the method text, every point in the newer half of an anchor was
decoded on the wrong side of it (a perfect point head scored avg mAP 14.5 on the default data,
and only 40% of its segments contained their point). These tests pin what a perfect model must
get through our inference path.
"""

from pathlib import Path

import numpy as np
import pytest
import yaml

from onpoint_core.data.dataset import load_dataset
from onpoint_core.data.synthetic import generate_synthetic
from onpoint_core.evaluation import evaluate_detections
from onpoint_core.online.oracle import stream_oracle
from onpoint_core.points.labels import gaussian_points
from tests.conftest import tiny_synthetic

REPO = Path(__file__).resolve().parents[1]
RAW = yaml.safe_load((REPO / "params.yaml").read_text())
ANCHORS = RAW["datasets"]["synthetic"]["anchors"]          # 4, 8, 16, 32, 48, 64
WINDOW = RAW["datasets"]["synthetic"]["window"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_one_point_by_hand():
    # One point at 50.3 s of a 100-step video at 1 step/s. Anchor L holds it while
    # now - L <= 50.3 < now; its segment is [50.3 - L/2, 50.3 + L/2], complete once now >= 50.3 + L/2.
    # All anchors score the same, so the per-step NMS keeps the smallest holding anchor first:
    #   now 53: L=4 complete and emitted (8 is suppressed by 4 at tIoU 0.5; 16 and 64 kept, incomplete)
    #   now 59: L=16 complete; 4 no longer holds the point; tIoU 0.25 with the emitted 4 -> emitted
    #   32 and 48 are suppressed by 16 (tIoU 0.5 and 1/3 > 0.3); 64 only survives the per-step NMS
    #   once 48 has lost the point (now 99), then tIoU 0.25 with 16 -> emitted
    video = {"video_id": "v", "n_steps": 100, "duration": 100.0, "points": [50.3], "point_labels": [0]}
    found = stream_oracle([video], ANCHORS, ["a", "b"], "point", WINDOW)
    assert found.label.tolist() == ["a", "a", "a"]
    np.testing.assert_allclose(found.end - found.start, [4, 16, 64])
    np.testing.assert_allclose((found.start + found.end) / 2, 50.3, atol=1e-9)
    np.testing.assert_allclose(found.gen_time, [53, 59, 99])


@pytest.fixture(scope="module")
def test_split(tmp_path_factory):
    root = tmp_path_factory.mktemp("oracle")
    generate_synthetic(tiny_synthetic(RAW, num_train_videos=2, num_test_videos=6, video_seconds=[60, 90],
                                      stream_dim=4), root / "dataset", progress=False)
    dataset = load_dataset(root / "dataset")
    ids = dataset.video_ids("test")
    gt = dataset.segments[dataset.segments.video_id.isin(ids)].reset_index(drop=True)
    return dataset, ids, gt


def _videos(dataset, ids, gt, points=None):
    videos = []
    for video_id in ids:
        rows = gt[gt.video_id == video_id]
        video = {"video_id": video_id, "n_steps": int(dataset.video(video_id)["n_steps"]),
                 "duration": float(dataset.video(video_id)["duration"]),
                 "segments": rows[["start", "end"]].to_numpy(), "segment_labels": dataset.label_index(rows.label)}
        if points is not None:
            mine = points[points.video_id == video_id]
            video["points"], video["point_labels"] = mine.time.to_numpy(), dataset.label_index(mine.label)
        videos.append(video)
    return videos


def _contains_a_point(found, points):
    """Per emitted segment: does a point of its class lie inside it?"""
    merged = found.reset_index().merge(points, on=["video_id", "label"])
    inside = merged[(merged.start <= merged.time) & (merged.time <= merged.end)]
    return found.index.isin(inside["index"])


def test_perfect_point_heads_centre_every_segment_on_its_point(test_split):
    dataset, ids, gt = test_split
    points = gaussian_points(gt, seed=0, sigma_fraction=1 / 6)
    found = stream_oracle(_videos(dataset, ids, gt, points), ANCHORS, dataset.classes, "point", WINDOW)
    assert len(found) >= len(points)
    assert _contains_a_point(found, points).all()
    # every segment's centre is a point of its class (to float precision; segments that began
    # before the video are clipped at 0 s and excluded)
    whole = found[found.start > 0]
    for (video_id, label), group in whole.assign(centre=(whole.start + whole.end) / 2).groupby(["video_id", "label"]):
        mine = points[(points.video_id == video_id) & (points.label == label)].time.to_numpy()
        assert np.abs(group.centre.to_numpy()[:, None] - mine[None, :]).min(axis=1).max() < 1e-6
    # with points at the GT centres, each GT segment whose length is an anchor's is found exactly
    centred = gt.assign(time=(gt.start + gt.end) / 2)[["video_id", "label", "time"]]
    exact = stream_oracle(_videos(dataset, ids, gt, centred), ANCHORS, dataset.classes, "point", WINDOW)
    result = evaluate_detections(gt, exact, videos=ids)
    assert result["recall_0.5"] > 0.5


def test_perfect_instance_heads_find_every_segment(test_split):
    dataset, ids, gt = test_split
    found = stream_oracle(_videos(dataset, ids, gt), ANCHORS, dataset.classes, "instance", WINDOW)
    result = evaluate_detections(gt, found, videos=ids)
    # OAT's decode of exact (z0, z1) targets reproduces every GT segment once, nothing else
    assert result["avg_0.1_0.7"] == pytest.approx(100.0) and result["num_pred"] == len(gt)
    assert (found.end <= found.gen_time + 1e-9).all()
