"""What every teacher consumes and produces, in steps of the teacher's own features.

Teachers see features and points only: the ground-truth segments of training videos never
reach them (the stage builds `TeacherVideo`s from the points table, not from segments).
Times here are in the teacher's steps; the stages convert to seconds with n_steps / duration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

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


@dataclass
class TeacherOutput:
    """What a frozen teacher says about one video, in its own steps.

    cas         T x (C+1) float32, background last: the CAS the student distils (L_cass) and the
                teacher's own proposals read (HR-Pro: the fused `sigmoid(class) * (1 - bkg)`;
                TSASPC: the per-frame softmax).
    class_prob  T x C float32: a per-class score in [0, 1] that reaches 0.5 where the teacher
                believes the class is happening; the anticipation targets binarise it (HR-Pro:
                its fused CAS min-max normalised over the video, since the fused CAS stays far
                below 0.5 by construction, see hrpro.teacher.class_probabilities; TSASPC: the
                softmax's action columns).
    """

    cas: np.ndarray
    class_prob: np.ndarray


class Teacher(Protocol):
    """What the stages call on a teacher (HRProTeacher, TSASPCTeacher): no caller branches on the kind.

    The constructor takes (num_classes, feature_dim, train settings); the training settings are
    all a teacher keeps. Post-processing settings are arguments: `proposals` (shared by
    detections and pseudo segments), `detect` and `pseudo` (config.<Kind>Proposals/Detect/Pseudo).
    Arrays are in the teacher's steps; rows are (label, start, end, score, point), end exclusive.
    """

    def fit(self, videos, log=None, progress=True, checkpoint=None) -> list: ...
    def predict_batch(self, features_list, batch) -> list: ...       # [TeacherOutput]
    def predict_cas_batch(self, features_list, batch) -> list: ...   # [TeacherOutput.cas]
    def video_scores(self, cas, detect) -> np.ndarray: ...
    def detect(self, cas, proposals, detect, class_ratio=None) -> np.ndarray: ...
    def pseudo_segments(self, cas, point_steps, point_labels, proposals, pseudo) -> np.ndarray: ...
    def training_report(self) -> dict: ...
    def state_dict(self) -> dict: ...

    @classmethod
    def from_state(cls, state): ...


# A teacher detection / pseudo segment, in steps: end is exclusive (start <= t < end).
SEGMENT_FIELDS = ("label", "start", "end", "score", "point")


def segments_array(rows):
    """Stack (label, start, end, score, point) rows into an N x 5 float64 array (point NaN if none)."""
    if not len(rows):
        return np.zeros((0, 5), dtype=np.float64)
    return np.asarray(rows, dtype=np.float64).reshape(-1, 5)
