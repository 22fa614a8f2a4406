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


def read_cached_cas(cache_dir, video_ids):
    """CAS of the given videos from the teacher_cache stage's folder: {video_id: T x (C+1)}."""
    cas = {}
    for video_id in video_ids:
        path = Path(cache_dir) / "cas" / f"{video_id}.npy"
        try:
            cas[video_id] = np.load(path)
        except FileNotFoundError:
            raise OnPointError(f"{path}: cached CAS missing (run the teacher_cache stage)") from None
        except ValueError as exc:
            raise OnPointError(f"{path}: not a readable .npy file ({exc})") from None
    return cas
