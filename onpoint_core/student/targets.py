"""Training targets of the student for every step of a video at once (docs/method.md 4).

Time convention, shared with the streaming engine (onpoint_core/online): step t of a video covers
[t, t+1) in step units; when step t has arrived, "now" is t+1. Anchor j of length L_j spans
[now - L_j, now), so every anchor ends at the current step. Segments and points arrive in
seconds and are converted with the video's own rate n_steps / duration.

Everything is computed as T x M (x K) arrays, one call per video; nothing loops over steps or
anchors in Python.
"""

from __future__ import annotations

import numpy as np

IOU_POSITIVE = 0.5


def anchor_spans(num_steps, anchors):
    """(starts, ends) of every anchor at every step, each T x M, in step units."""
    now = np.arange(1, num_steps + 1, dtype=np.float64)[:, None]
    lengths = np.asarray(anchors, dtype=np.float64)[None, :]
    return now - lengths, np.broadcast_to(now, (num_steps, lengths.shape[1]))


def instance_targets(num_steps, anchors, segments, labels, num_classes):
    """OAT's anchor assignment against segments (K x 2, step units) with class indices (K,).

    Returns
      classes     T x M x (C+1) float32: multi-hot over the matched segments' classes, normalised
                  to sum 1; background (last) when nothing matches
      regression  T x M x 2 float32: (z0, z1) = ((end - now) / L, log(max(1, length) / L)) of the
                  matched segment with the highest IoU (zero where negative)
      positive    T x M bool
    A segment matches an anchor when their IoU >= 0.5, or (largest anchor) the anchor lies inside
    the segment, or (smallest anchor) the anchor contains the segment. Segments still running at
    `now` take part with their full extent, which is what lets an anchor fire before the end.
    """
    anchors = np.asarray(anchors, dtype=np.float64)
    num_anchors = len(anchors)
    classes = np.zeros((num_steps, num_anchors, num_classes + 1), dtype=np.float32)
    regression = np.zeros((num_steps, num_anchors, 2), dtype=np.float32)
    segments = np.asarray(segments, dtype=np.float64).reshape(-1, 2)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if not len(segments):
        classes[..., -1] = 1.0
        return classes, regression, np.zeros((num_steps, num_anchors), dtype=bool)

    a_start, a_end = anchor_spans(num_steps, anchors)                     # T x M
    s, e = segments[:, 0], segments[:, 1]                                  # K
    a_s, a_e = a_start[..., None], a_end[..., None]                        # T x M x 1
    inter = np.clip(np.minimum(a_e, e) - np.maximum(a_s, s), 0.0, None)   # T x M x K
    union = (a_e - a_s) + (e - s) - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    match = iou >= IOU_POSITIVE
    largest, smallest = int(np.argmax(anchors)), int(np.argmin(anchors))
    match[:, largest] |= (s <= a_s[:, largest]) & (a_e[:, largest] <= e)   # anchor inside a running action
    match[:, smallest] |= (a_s[:, smallest] <= s) & (e <= a_e[:, smallest]) & (e > s)
    positive = match.any(axis=-1)

    one_hot = np.eye(num_classes + 1, dtype=np.float32)[labels]            # K x (C+1)
    counts = match.astype(np.float32) @ one_hot                            # T x M x (C+1)
    counts = np.minimum(counts, 1.0)                                       # multi-hot over classes
    counts[~positive, -1] = 1.0
    classes[:] = counts / counts.sum(axis=-1, keepdims=True)

    best = np.argmax(np.where(match, iou + 1.0, 0.0), axis=-1)             # matched, highest IoU first
    seg_end, seg_len = e[best], (e - s)[best]                              # T x M
    lengths = anchors[None, :]
    z0 = (seg_end - a_end) / lengths
    z1 = np.log(np.maximum(1.0, seg_len) / lengths)
    regression[..., 0] = np.where(positive, z0, 0.0)
    regression[..., 1] = np.where(positive, z1, 0.0)
    return classes, regression, positive


def point_targets(num_steps, anchors, points, labels, num_classes):
    """Point-head targets from points (P,, step units) with class indices (P,).

    Returns
      classes   T x M int64: class of the point inside the anchor span nearest its centre,
                C (background) when the span holds no point
      offset    T x M float32: (anchor centre - point) / L for that point, signed, in (-0.5, 0.5]
                (0 where none)
      has_point T x M bool
    The offset is signed where the method text writes |centre - point| / L: without the sign the
    decode cannot tell on which side of the centre the point lies, and shifting every anchor the
    same way mirrors the segment of every point in the newer half of its anchor (a documented
    departure; see online/decode.decode_points).
    """
    a_start, a_end = anchor_spans(num_steps, anchors)
    target = np.full(a_start.shape, num_classes, dtype=np.int64)
    offset = np.zeros(a_start.shape, dtype=np.float32)
    points = np.asarray(points, dtype=np.float64).reshape(-1)
    if not len(points):
        return target, offset, np.zeros(a_start.shape, dtype=bool)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    inside = (a_start[..., None] <= points) & (points < a_end[..., None])  # T x M x P
    centre = (a_start + a_end)[..., None] / 2.0
    signed = centre - points                                                # T x M x P
    nearest = np.argmin(np.where(inside, np.abs(signed), np.inf), axis=-1)
    has_point = inside.any(axis=-1)
    lengths = np.asarray(anchors, dtype=np.float64)[None, :]
    target[has_point] = labels[nearest][has_point]
    offset[has_point] = (np.take_along_axis(signed, nearest[..., None], -1)[..., 0] / lengths)[has_point]
    return target, offset, has_point


def resample_cas(cas, teacher_steps, student_steps):
    """Teacher CAS (T_t x K) onto the student's step centres, linear in time (docs/method.md 3c).

    Both step grids span the same video, so step centres at (i + 0.5) / n in video fractions
    line up; equal grids return the input unchanged.
    """
    cas = np.asarray(cas, dtype=np.float32)
    if teacher_steps == student_steps:
        return cas
    src = (np.arange(teacher_steps) + 0.5) / teacher_steps
    dst = (np.arange(student_steps) + 0.5) / student_steps
    # np.interp per channel, vectorised: the same weights for every channel
    right = np.clip(np.searchsorted(src, dst), 1, teacher_steps - 1) if teacher_steps > 1 else np.zeros(student_steps, int)
    if teacher_steps == 1:
        return np.repeat(cas, student_steps, axis=0)
    left = right - 1
    weight = np.clip((dst - src[left]) / (src[right] - src[left]), 0.0, 1.0)[:, None]
    return ((1.0 - weight) * cas[left] + weight * cas[right]).astype(np.float32)


def future_targets(class_prob, horizon, threshold=0.5):
    """T x C multi-hot: does action class c reach `threshold` over steps t+1..t+horizon?

    class_prob: T x C per-class teacher probabilities (teachers.base.TeacherOutput.class_prob),
    not the fused HR-Pro CAS, which stays far below 0.5 by construction.
    """
    actions = np.asarray(class_prob) >= threshold                            # T x C
    num_steps = len(actions)
    # suffix counts make "any in (t, t+horizon]" one subtraction per step
    cumulative = np.concatenate([np.zeros((1, actions.shape[1]), np.int64), np.cumsum(actions, axis=0)])
    lo = np.arange(1, num_steps + 1)
    hi = np.minimum(lo + horizon, num_steps)
    return ((cumulative[hi] - cumulative[np.minimum(lo, num_steps)]) > 0).astype(np.float32)
