"""What each run of the comparison may read to train the student, gathered in one place.

POTAL runs read features, points, and the frozen teacher's cache (CAS and pseudo segments).
Ground-truth segments of training videos are read here only for the fully supervised reference
run (`Variant.reads_ground_truth`); tests/test_student_training.py shuffles them and checks that
every other run's inputs stay identical.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import OnPointError
from ..io import read_stage_table
from ..data.tables import read_cached
from .targets import resample_cas


@dataclass
class StudentVideo:
    """One training video on the student's step grid; times in seconds."""

    video_id: str
    features: np.ndarray                          # T x F float32
    duration: float
    segments: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))   # K x 2 seconds
    segment_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    points: np.ndarray = field(default_factory=lambda: np.zeros(0))          # P seconds
    point_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    teacher_cas: np.ndarray | None = None         # T x (C+1) on the student's steps (L_cass)
    teacher_class_prob: np.ndarray | None = None  # T x C on the student's steps (anticipation targets)

    @property
    def num_steps(self):
        return len(self.features)

    @property
    def rate(self):
        return self.num_steps / self.duration


def _label_index(dataset, labels, source):
    unknown = sorted(set(labels) - set(dataset.classes))
    if unknown:
        raise OnPointError(f"{source}: label {unknown[0]!r} is not a class of the dataset ({len(dataset.classes)} classes)")
    return dataset.label_index(labels)


def _by_video(table):
    return {vid: group for vid, group in table.groupby("video_id", sort=False)} if len(table) else {}


def read_pseudo_segments(path):
    return read_stage_table(path, ("video_id", "label", "start", "end"),
                            "pseudo segments not found (run the pseudo_segments stage)")


def _cached(teacher_cache, video_id, what, columns, num_steps):
    """One cached teacher array of a video, checked and resampled onto the student's steps."""
    values = read_cached(teacher_cache, [video_id], what)[video_id]
    if values.shape[1] != columns:
        raise OnPointError(f"{teacher_cache}/{what}/{video_id}.npy: shape {values.shape}, expected T x {columns}")
    return resample_cas(values, len(values), num_steps)


def student_videos(dataset, subsets, variant, points=None, pseudo=None, teacher_cache=None):
    """StudentVideos of `subsets` with exactly the inputs `variant` trains on.

    points: the points stage's table (needed when variant.points); pseudo: the pseudo-segment
    table (variant.instance_targets == "pseudo"); teacher_cache: the teacher_cache folder (its
    CAS for variant.cass, its class probabilities for variant.anticipation). Ground truth is
    read only for "gt" instance targets.
    """
    points_by = _by_video(points) if variant.points else {}
    if variant.instance_targets == "pseudo":
        segments_by = _by_video(pseudo)
    elif variant.instance_targets == "gt":
        segments_by = _by_video(dataset.segments)          # fully supervised reference only
    else:
        segments_by = {}
    wants_cas = variant.cass or variant.anticipation     # the CAS window also feeds the calibration
    videos = []
    for video_id in dataset.video_ids(*subsets):
        features = np.asarray(dataset.features(video_id), dtype=np.float32)
        video = StudentVideo(video_id, features, float(dataset.video(video_id)["duration"]))
        group = segments_by.get(video_id)
        if group is not None:
            video.segments = group[["start", "end"]].to_numpy(np.float64)
            video.segment_labels = _label_index(dataset, group.label, "segments table")
        group = points_by.get(video_id)
        if group is not None:
            video.points = group["time"].to_numpy(np.float64)
            video.point_labels = _label_index(dataset, group.label, "points table")
        if wants_cas:
            video.teacher_cas = _cached(teacher_cache, video_id, "cas", dataset.num_classes + 1, video.num_steps)
        if variant.anticipation:
            video.teacher_class_prob = _cached(teacher_cache, video_id, "class_prob", dataset.num_classes,
                                               video.num_steps)
        videos.append(video)
    return videos
