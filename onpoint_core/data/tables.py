"""Readers of the tables earlier stages write, checked, for the stages after them.

They live in `data/` so that the student reads the points and the teacher's cache without
importing the teacher package.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import OnPointError
from ..io import read_stage_table


def read_points(path):
    """The points table of the points stage, checked for the columns its readers need."""
    return read_stage_table(path, ("video_id", "label", "time"), "points file not found (run the points stage)")


CACHE_ARRAYS = {"cas": ("cached CAS", 2), "class_prob": ("cached class probabilities", 2)}


def read_cached(cache_dir, video_ids, what="cas"):
    """One kind of array the teacher_cache stage wrote, per video: {video_id: array}.

    what: "cas" (T x (C+1), background last: the CAS the student distils and the pseudo
    segments come from) or "class_prob" (T x C: the per-class probabilities the anticipation
    targets binarise; see teachers.base.TeacherOutput).
    """
    name, ndim = CACHE_ARRAYS[what]
    arrays = {}
    for video_id in video_ids:
        path = Path(cache_dir) / what / f"{video_id}.npy"
        try:
            arrays[video_id] = np.load(path)
        except FileNotFoundError:
            raise OnPointError(f"{path}: {name} missing (run the teacher_cache stage)") from None
        except ValueError as exc:
            raise OnPointError(f"{path}: not a readable .npy file ({exc})") from None
        if arrays[video_id].ndim != ndim:
            raise OnPointError(f"{path}: {name} must be a {ndim}-d array, got shape {arrays[video_id].shape}")
    return arrays


def read_cached_cas(cache_dir, video_ids):
    """CAS of the given videos from the teacher_cache stage's folder: {video_id: T x (C+1)}."""
    return read_cached(cache_dir, video_ids, "cas")
