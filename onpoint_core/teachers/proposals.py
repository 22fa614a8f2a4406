"""Temporal proposals from a class activation sequence (CAS): generic numpy code shared by teachers.

The pipeline follows the weakly/point-supervised TAL recipe used by HR-Pro (docs/method.md 3a):
upsample the CAS, threshold it at many levels, turn every run of consecutive above-threshold
samples into a proposal, score it by outer-inner contrast (OIC) on the CAS zeroed below the run's
threshold, then suppress duplicates class by class. Every function works on whole arrays (runs come from `np.diff` of a boolean mask, OIC from
cumulative sums), so the cost does not grow with Python loops over time steps.

Conventions (all in the CAS's own steps): step t covers [t, t+1); a proposal is
(label, start, end, score) with `end` exclusive. After upsampling by `f`, sample j sits at position
j / f and covers [j / f, (j + 1) / f), so a run of samples s..e becomes [s / f, (e + 1) / f).
"""

from __future__ import annotations

import math

import numpy as np

PROPOSAL_FIELDS = ("label", "start", "end", "score")


def threshold_grid(spec):
    """`[start, stop, step]` (stop inclusive) -> thresholds; linspace avoids float drift of arange."""
    if spec is None or len(spec) == 0:
        return np.zeros(0)
    if len(spec) != 3:
        raise ValueError(f"threshold spec must be [start, stop, step], got {spec!r}")
    start, stop, step = (float(v) for v in spec)
    if step <= 0 or stop < start:
        raise ValueError(f"threshold spec must have step > 0 and stop >= start, got {spec!r}")
    count = int(math.floor((stop - start) / step + 1e-9)) + 1
    return np.round(start + step * np.arange(count), 10)


def upsample(x, factor):
    """Linear interpolation along axis 0 onto `factor` sub-steps per step, centre-aligned.

    Step t covers [t, t + 1) and its value sits at its centre t + 0.5; sub-step j covers
    [j / factor, (j + 1) / factor) and takes the value interpolated at its own centre. (HR-Pro
    aligns samples at step starts, which shifts every proposal about a quarter step early.) Ends
    hold the first/last value instead of extrapolating, so a sigmoid CAS stays inside [0, 1].
    """
    x = np.asarray(x, dtype=np.float64)
    factor = int(factor)
    if factor <= 1 or x.shape[0] == 0:
        return x.copy()
    n = x.shape[0]
    pos = np.clip((np.arange(n * factor) + 0.5) / factor - 0.5, 0.0, n - 1)
    lo = np.minimum(np.floor(pos).astype(np.int64), n - 1)
    hi = np.minimum(lo + 1, n - 1)
    w = (pos - lo).reshape((-1,) + (1,) * (x.ndim - 1))
    return x[lo] * (1.0 - w) + x[hi] * w


def find_runs(mask):
    """Runs of True along axis 0 of an (N,) or (N, K) mask -> (column, start, end), end exclusive.

    Runs come out sorted by column, then by start.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.size == 0:
        return (np.zeros(0, np.int64),) * 3
    m = mask.reshape(mask.shape[0], -1)
    n, k = m.shape
    padded = np.zeros((k, n + 2), dtype=np.int8)
    padded[:, 1:-1] = m.T
    edges = np.diff(padded, axis=1)
    col, start = np.nonzero(edges == 1)      # row-major over (column, position): sorted as promised
    _, end = np.nonzero(edges == -1)
    return col.astype(np.int64), start.astype(np.int64), end.astype(np.int64)


def outer_inner_contrast(signal, column, start, end, outer=0.25):
    """OIC score of runs of `signal[:, column]`: mean inside minus mean of the two flanking regions.

    Each flank is ceil(outer * length) samples wide (clipped at the video ends); the outer mean is
    taken over the union of both flanks, and is 0 when both are empty. HR-Pro truncates the two
    flanks differently (left rounded up, right down); we make them symmetric.
    """
    signal = np.asarray(signal, dtype=np.float64)
    sig = signal.reshape(signal.shape[0], -1)
    n = sig.shape[0]
    column, start, end = (np.asarray(a, dtype=np.int64) for a in (column, start, end))
    csum = np.zeros((n + 1, sig.shape[1]))
    np.cumsum(sig, axis=0, out=csum[1:])
    length = end - start
    flank = np.ceil(outer * length - 1e-9).astype(np.int64)
    left = np.maximum(start - flank, 0)
    right = np.minimum(end + flank, n)
    inner = (csum[end, column] - csum[start, column]) / np.maximum(length, 1)
    outer_sum = (csum[start, column] - csum[left, column]) + (csum[right, column] - csum[end, column])
    outer_len = (start - left) + (right - end)
    outer_mean = np.where(outer_len > 0, outer_sum / np.maximum(outer_len, 1), 0.0)
    return inner - outer_mean


def _threshold_runs(signal, thresholds, outer):
    """Runs of each column of `signal` (T' x K) strictly above each threshold, scored there.

    Returns (column, start, end, score). As in HR-Pro, a run found at threshold th is scored by
    OIC on the column with every value below th set to 0: its low flanks count as silence, which
    rewards runs that stand out from their surroundings at that level, while a neighbouring run
    above th still counts against it.
    """
    k = signal.shape[1]
    zeroed = np.where(signal[:, None, :] < thresholds[None, :, None], 0.0, signal[:, None, :])
    zeroed = zeroed.reshape(signal.shape[0], -1)                     # column j = threshold j // k, class j % k
    col, s, e = find_runs(signal[:, None, :] > thresholds[None, :, None])
    return col % k, s, e, outer_inner_contrast(zeroed, col, s, e, outer)


def _actionness_runs(signal, actionness, thresholds, outer):
    """Runs of the class-agnostic actionness above each threshold, proposed for every column and
    scored by OIC on that column's raw CAS (HR-Pro zeroes only the actionness, not the CAS)."""
    _, s, e = find_runs(actionness[:, None] > thresholds[None, :])
    k = signal.shape[1]
    col, s, e = np.repeat(np.arange(k), s.size), np.tile(s, k), np.tile(e, k)
    return col, s, e, outer_inner_contrast(signal, col, s, e, outer)


def _best_per_run(col, s, e, score):
    """One row per (column, start, end): the highest score among its duplicates, rows sorted by
    key. Soft-NMS would cut the lower duplicates to exp(-1 / sigma) of their score anyway."""
    order = np.lexsort((-score, e, s, col))
    col, s, e, score = col[order], s[order], e[order], score[order]
    first = np.ones(col.size, bool)
    first[1:] = (col[1:] != col[:-1]) | (s[1:] != s[:-1]) | (e[1:] != e[:-1])
    return col[first], s[first], e[first], score[first]


def cas_proposals(cas, actionness=None, classes=None, cas_thresholds=(), actionness_thresholds=(),
                  factor=2, outer=0.25):
    """Multi-threshold proposals of a T x C class CAS, in the CAS's steps -> N x 4 (label, start, end, score).

    Runs where the (upsampled) class score is strictly above each `cas_thresholds` level, scored
    by OIC on the class CAS zeroed below that level; plus runs where the class-agnostic
    `actionness` is strictly above each `actionness_thresholds` level, proposed for every class in
    `classes` and scored by OIC on the class's raw upsampled CAS (both as HR-Pro). The same
    (label, start, end) found more than once keeps its highest score (HR-Pro keeps every copy
    and lets soft-NMS decay the lower ones to exp(-1 / sigma) of their score).
    """
    cas = np.asarray(cas, dtype=np.float64)
    if cas.ndim != 2:
        raise ValueError(f"cas must be T x C, got shape {cas.shape}")
    classes = np.arange(cas.shape[1]) if classes is None else np.asarray(classes, dtype=np.int64).reshape(-1)
    cas_thresholds = np.asarray(cas_thresholds, dtype=np.float64).reshape(-1)
    actionness_thresholds = np.asarray(actionness_thresholds, dtype=np.float64).reshape(-1)
    if cas.shape[0] == 0 or classes.size == 0:
        return np.zeros((0, 4))
    signal = upsample(cas[:, classes], factor)                       # T' x K
    found = []
    if cas_thresholds.size:
        found.append(_threshold_runs(signal, cas_thresholds, outer))
    if actionness_thresholds.size and actionness is not None:
        act = upsample(np.asarray(actionness, dtype=np.float64).reshape(-1), factor)
        found.append(_actionness_runs(signal, act, actionness_thresholds, outer))
    if not found:
        return np.zeros((0, 4))
    col, s, e, score = _best_per_run(*(np.concatenate(parts) for parts in zip(*found)))
    f = float(max(int(factor), 1))
    return np.stack([classes[col].astype(np.float64), s / f, e / f, score], axis=1)


def segment_iou(segment, segments):
    """tIoU of one [start, end) against an N x 2 array of them."""
    segments = np.asarray(segments, dtype=np.float64).reshape(-1, 2)
    inter = np.clip(np.minimum(segment[1], segments[:, 1]) - np.maximum(segment[0], segments[:, 0]), 0, None)
    union = (segment[1] - segment[0]) + (segments[:, 1] - segments[:, 0]) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def nms(proposals, iou_threshold=0.5, sigma=None, min_score=None):
    """Class-wise NMS of N x 4+ rows (label, start, end, score, ...): classes never suppress each other.

    `sigma=None`: hard NMS, a kept proposal removes same-class ones with tIoU > `iou_threshold`.
    `sigma>0`: Gaussian soft-NMS (HR-Pro's post-processing, sigma 0.3): scores of the rest decay by
    exp(-tIoU^2 / sigma) and nothing is removed unless `min_score` is given.
    Rows come back sorted by (decayed) score, highest first; extra columns ride along.
    """
    proposals = np.asarray(proposals, dtype=np.float64)
    if proposals.size == 0:
        return proposals.reshape(0, max(proposals.shape[-1] if proposals.ndim == 2 else 4, 4))
    kept = []
    for label in np.unique(proposals[:, 0]):
        rest = proposals[proposals[:, 0] == label].copy()
        while rest.shape[0]:
            best = int(np.argmax(rest[:, 3]))
            top = rest[best]
            rest = np.delete(rest, best, axis=0)
            if min_score is not None and top[3] < min_score:
                break
            kept.append(top)
            if not rest.shape[0]:
                break
            iou = segment_iou(top[1:3], rest[:, 1:3])
            if sigma is None:
                rest = rest[iou <= iou_threshold]
            else:
                rest[:, 3] *= np.exp(-(iou ** 2) / sigma)
    out = np.stack(kept) if kept else np.zeros((0, proposals.shape[1]))
    return out[np.argsort(-out[:, 3], kind="stable")]


def reliable_proposals(proposals, point_steps, point_labels, min_score=None, max_length=None):
    """One pseudo segment per point: the best same-class proposal containing it -> M x 5 rows
    (label, start, end, score, point_step); points with no containing proposal get no row.

    "Contains" means start <= p < end. Among containing proposals, those that stay strictly between
    the neighbouring points (the nearest points at other steps, any class: start > previous point,
    end <= next point) win over higher-scoring ones that swallow a neighbour; only when none stays
    between do crossing proposals compete. Ties keep the first row. `min_score` (optional) drops
    weak proposals first; HR-Pro requires a positive score, the method does not. `max_length`
    (optional, steps) drops longer proposals first: the lowest CAS threshold of the grid (0.0)
    makes one run over a whole video for every class, which has no flanks to contrast with and
    would otherwise be picked whenever nothing stays between neighbouring points.
    """
    proposals = np.asarray(proposals, dtype=np.float64).reshape(-1, 4)
    if min_score is not None:
        proposals = proposals[proposals[:, 3] > min_score]
    if max_length is not None:
        proposals = proposals[proposals[:, 2] - proposals[:, 1] <= max_length]
    steps = np.asarray(point_steps, dtype=np.float64).reshape(-1)
    labels = np.asarray(point_labels, dtype=np.int64).reshape(-1)
    unique_steps = np.unique(steps)
    rows = []
    for p, c in zip(steps, labels):
        i = np.searchsorted(unique_steps, p)
        prev = unique_steps[i - 1] if i > 0 else -np.inf
        nxt = unique_steps[i + 1] if i + 1 < unique_steps.size else np.inf
        contains = (proposals[:, 0] == c) & (proposals[:, 1] <= p) & (proposals[:, 2] > p)
        if not contains.any():
            continue
        inside = contains & (proposals[:, 1] > prev) & (proposals[:, 2] <= nxt)
        pool = inside if inside.any() else contains
        idx = np.flatnonzero(pool)
        best = idx[int(np.argmax(proposals[idx, 3]))]
        rows.append([*proposals[best], p])
    return np.asarray(rows, dtype=np.float64).reshape(-1, 5)


def topk_video_scores(cas, divisor=8):
    """Video-level class scores of a T x K CAS: mean of each column's top max(1, T // divisor) values."""
    cas = np.asarray(cas, dtype=np.float64)
    k = max(1, cas.shape[0] // int(divisor))
    return np.sort(cas, axis=0)[-k:].mean(axis=0)
