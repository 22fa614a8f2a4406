"""What every teacher consumes and produces, in steps of the teacher's own features.

Teachers see features and points only: the ground-truth segments of training videos never
reach them (the stage builds `TeacherVideo`s from the points table, not from segments).
Times here are in the teacher's steps; the stages convert to seconds with n_steps / duration.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import fail
from ..io import atomic_file


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


def write_resume_file(path, state):
    """Save a teacher's training state atomically (plain types and CPU tensors only)."""
    with atomic_file(path, "wb") as handle:
        torch.save(state, handle)


def read_resume_file(path, tag, fingerprint):
    """A teacher's resume file at `path`, checked against this fit's inputs.

    `tag` names the teacher's format (stored under "format"). An unreadable file, another
    format, or a file made from other inputs is refused with a one-line OnPointError rather
    than overwritten: it may hold a long run.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same one-line error
        fail(path, f"cannot read the resume file ({type(exc).__name__}: {exc}); delete it to start afresh")
    if not isinstance(state, dict) or state.get("format") != tag:
        fail(path, f"not a resume file of format {tag!r}; delete it to start afresh")
    saved = state.get("fingerprint") or {}
    differ = sorted(k for k in fingerprint.keys() | saved.keys() if saved.get(k) != fingerprint.get(k))
    if differ:
        fail(path, f"resume file ({tag}) was made from other inputs (differs in: {', '.join(differ)}); "
                   "delete it to start afresh")
    return state
