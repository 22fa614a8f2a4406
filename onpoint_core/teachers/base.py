"""What every teacher consumes and produces, in steps of the teacher's own features.

Teachers see features and points only: the ground-truth segments of training videos never
reach them (the stage builds `TeacherVideo`s from the points table, not from segments).
Times here are in the teacher's steps; the stages convert to seconds with n_steps / duration.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class TeacherVideo:
    """One video as a teacher sees it."""

    video_id: str
    features: np.ndarray                      # float32, T x D
    point_steps: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))   # int, sorted
    point_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # class index per point

    @property
    def n_steps(self):
        return int(self.features.shape[0])


# A teacher detection / pseudo segment, in steps: end is exclusive (start <= t < end).
SEGMENT_FIELDS = ("label", "start", "end", "score", "point")


def segments_array(rows):
    """Stack (label, start, end, score, point) rows into an N x 5 float64 array (point NaN if none)."""
    if not len(rows):
        return np.zeros((0, 5), dtype=np.float64)
    return np.asarray(rows, dtype=np.float64).reshape(-1, 5)
