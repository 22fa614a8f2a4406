"""Point labels: Gaussian sampling, LACP statistics on the real THUMOS'14 points, the stage."""

import json

import numpy as np
import pandas as pd
import pytest

from onpoint_core.data.dataset import load_dataset
from onpoint_core.data.synthetic import generate_synthetic
from onpoint_core.errors import OnPointError
from onpoint_core.points.labels import gaussian_points, relative_positions, training_points
from tests.conftest import tiny_synthetic


def _segments(n, seed=0):
    rng = np.random.default_rng(seed)
    start = rng.uniform(0, 100, n)
    length = rng.uniform(1, 20, n)
    return pd.DataFrame({"video_id": [f"v{i % 7}" for i in range(n)], "label": ["a"] * n,
                         "start": start, "end": start + length})


def test_gaussian_points_lie_inside_and_follow_sigma_over_six():
    segments = _segments(4000)
    points = gaussian_points(segments, seed=3, sigma_fraction=1 / 6)
    ordered = segments.sort_values(["video_id", "start", "end", "label"], kind="stable").reset_index(drop=True)
    rel = (points.time - ordered.start) / (ordered.end - ordered.start)
    assert rel.between(0, 1).all()
    assert abs(rel.mean() - 0.5) < 0.01
    # N(0.5, 1/6) clipped to [0, 1] has std a little under 1/6
    assert 0.15 < rel.std() < 1 / 6 + 0.005


def test_gaussian_points_are_seeded_and_ignore_row_order():
    segments = _segments(50)
    a = gaussian_points(segments, seed=1, sigma_fraction=1 / 6)
    b = gaussian_points(segments.sample(frac=1, random_state=5), seed=1, sigma_fraction=1 / 6)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a.time, gaussian_points(segments, seed=2, sigma_fraction=1 / 6).time)


def test_lacp_points_match_the_published_statistics(shared_data):
    gt = json.loads((shared_data / "thumos14" / "gt_full.json").read_text())["database"]
    csv = pd.read_csv(shared_data / "thumos14" / "point_gaussian.csv")
    points = pd.DataFrame({"video_id": csv.video_id, "label": csv["class"],
                           "time": csv.point / csv.video_id.map(lambda v: gt[v]["fps"])})
    segments = pd.DataFrame([(v, a["label"], *a["segment"]) for v, e in gt.items() for a in e["annotations"]],
                            columns=["video_id", "label", "start", "end"])
    rel = relative_positions(points, segments)
    assert len(points) == 3003
    assert abs(np.nanmean(rel) - 0.475) < 0.01 and abs(np.nanstd(rel) - 0.035) < 0.01


def test_training_points_cover_train_and_val_only(tmp_path, raw_params):
    generate_synthetic(tiny_synthetic(raw_params, num_train_videos=10, val_fraction=0.2), tmp_path / "d", progress=False)
    ds = load_dataset(tmp_path / "d")
    points = training_points(ds, "gaussian", seed=0, sigma_fraction=1 / 6)
    assert set(points.video_id) <= set(ds.video_ids("train", "val"))
    assert len(points) == ds.segments.video_id.isin(ds.video_ids("train", "val")).sum()
    with pytest.raises(OnPointError, match="points.parquet: missing"):
        training_points(ds, "dataset", seed=0, sigma_fraction=None)


def test_point_noise_shifts_by_the_std_in_seconds_clipped_into_the_video():
    from onpoint_core.points.labels import shifted_points

    n = 4000
    points = pd.DataFrame({"video_id": ["a", "b"] * (n // 2), "label": "x",
                           "time": np.tile([50.0, 0.5], n // 2)})
    durations = {"a": 100.0, "b": 10.0}
    moved = shifted_points(points, durations, 2.0, seed=1)
    shift = moved.time[points.video_id == "a"] - 50.0           # far from the ends: plain N(0, 2^2)
    assert abs(shift.mean()) < 0.15 and shift.std() == pytest.approx(2.0, rel=0.05)
    near_start = moved.time[points.video_id == "b"]
    assert near_start.min() == 0.0 and near_start.max() <= 10.0   # clipped into the video, never outside
    assert (near_start == 0.0).mean() > 0.3                       # about P(N(0.5, 2) < 0) = 40% land on 0
    pd.testing.assert_frame_equal(moved, shifted_points(points, durations, 2.0, seed=1))   # seeded
    assert not moved.time.equals(shifted_points(points, durations, 2.0, seed=2).time)
    pd.testing.assert_frame_equal(shifted_points(points, durations, 0.0, seed=1), points)  # std 0: unchanged
    assert list(moved.columns) == list(points.columns) and (moved.label == "x").all()
