"""Point labels for training videos (docs/method.md 2).

THUMOS'14 uses the LACP points shipped with HR-Pro (imported into the dataset folder);
every other dataset samples one point per ground-truth instance from a Gaussian centred on
the segment's midpoint with sigma = duration / 6, clipped into the segment. Sampling the
points is the one place that reads training segments: it simulates the annotator.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data.dataset import POINT_COLUMNS
from ..errors import OnPointError

TRAINING_SUBSETS = ("train", "val")


def gaussian_points(segments, seed, sigma_fraction):
    """One point per segment ~ N(midpoint, (sigma_fraction * duration)^2), clipped into the segment."""
    ordered = segments.sort_values(["video_id", "start", "end", "label"], kind="stable").reset_index(drop=True)
    start, end = ordered.start.to_numpy(float), ordered.end.to_numpy(float)
    rng = np.random.default_rng(seed)
    draws = rng.standard_normal(len(ordered))
    times = np.clip((start + end) / 2 + draws * sigma_fraction * (end - start), start, end)
    return pd.DataFrame({"video_id": ordered.video_id, "label": ordered.label, "time": times})[POINT_COLUMNS]


def shifted_points(points, durations, std_seconds, seed):
    """Every point moved by N(0, std_seconds^2) seconds, clipped into its video [0, duration].

    The paper's point-noise study: how much does OnPoint lose when annotators click further from
    where they should? Points are shifted in table order with one seeded generator, so the same
    points, std and seed give the same shifts. std 0 returns the points unchanged.
    """
    if std_seconds == 0 or not len(points):
        return points.reset_index(drop=True)
    rng = np.random.default_rng(seed)
    duration = points.video_id.map(durations).to_numpy(float)
    times = np.clip(points.time.to_numpy(float) + rng.normal(0.0, std_seconds, len(points)), 0.0, duration)
    return points.assign(time=times).reset_index(drop=True)


def training_points(dataset, source, seed, sigma_fraction):
    """The points the teachers and the student train on: train and val videos only."""
    videos = set(dataset.video_ids(*TRAINING_SUBSETS))
    if source == "dataset":
        if dataset.points is None:
            raise OnPointError(f"{dataset.root / 'points.parquet'}: missing, but params ask for the dataset's "
                               "own points (points: dataset); use points: gaussian or import the points file")
        points = dataset.points[dataset.points.video_id.isin(videos)]
        return points.sort_values(["video_id", "time"], kind="stable").reset_index(drop=True)[POINT_COLUMNS]
    if source == "gaussian":
        segments = dataset.segments[dataset.segments.video_id.isin(videos)]
        return gaussian_points(segments, seed, sigma_fraction)
    raise OnPointError(f"unknown point source {source!r}")


def relative_positions(points, segments):
    """Position of each point inside the same-class segment that contains it (0 = start, 1 = end).

    A point inside several same-class segments takes the one whose midpoint is closest;
    points in no segment of their class are returned as NaN. Used for label-quality metrics only.
    """
    merged = points.reset_index(drop=True).reset_index().merge(segments, on=["video_id", "label"], how="left")
    inside = (merged.time >= merged.start) & (merged.time <= merged.end)
    merged = merged[inside].copy()
    merged["dist"] = (merged.time - (merged.start + merged.end) / 2).abs()
    best = merged.sort_values(["index", "dist"]).drop_duplicates("index")
    length = (best.end - best.start).where(lambda x: x > 0)
    rel = pd.Series(np.nan, index=range(len(points)))
    rel[best["index"].to_numpy()] = ((best.time - best.start) / length).to_numpy()
    return rel.to_numpy()


def point_metrics(points, dataset):
    """Counts and the mean/std of relative point positions (LACP THUMOS: 0.475 / 0.035)."""
    videos = dataset.video_ids(*TRAINING_SUBSETS)
    per_video = points.groupby("video_id").size().reindex(videos, fill_value=0)
    rel = relative_positions(points, dataset.segments)
    return {
        "num_points": int(len(points)),
        "num_videos": int(len(videos)),
        "points_per_video_mean": float(per_video.mean()) if len(videos) else 0.0,
        "points_per_video_max": int(per_video.max()) if len(videos) else 0,
        "videos_without_points": int((per_video == 0).sum()),
        "relative_position_mean": float(np.nanmean(rel)) if np.isfinite(rel).any() else None,
        "relative_position_std": float(np.nanstd(rel)) if np.isfinite(rel).any() else None,
        "points_outside_segments": int(np.isnan(rel).sum()),
    }
