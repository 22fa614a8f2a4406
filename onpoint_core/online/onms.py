"""MATR's online NMS for many independent streams at once (docs/method.md 5), vectorized.

Per stream and per step:
1. class-wise greedy NMS among this step's candidates: sorted by score (desc; ties by anchor
   index), a candidate is dropped when a kept, higher-ranked candidate of the same class has
   tIoU > iou_threshold with it;
2. survivors whose end <= now (+1e-9 s) are emitted unless an earlier emitted proposal of the same
   class in the same stream has tIoU > iou_threshold with them; survivors with end > now are
   dropped (the model predicts them again at later steps);
3. emitted proposals are final: they are never revised and keep suppressing later candidates.
tIoU = intersection / max(union, tiou_floor) with the floor 1 s by default (so two very short
segments do not suppress each other for a tiny overlap). No cross-class suppression. Seconds.

Cost: emitted proposals are kept in one flat array sorted by (stream x class, start), as complex
numbers (real = group, imag = start: numpy orders complex lexicographically, so one
`searchsorted` finds a group's time range exactly). For each candidate only the emitted proposals
of its group with start in (cand.start - longest emitted length, cand.end) are compared; all
others cannot intersect it, so the pruning is exact and the work per step does not grow with the
length of the video.
"""

from __future__ import annotations

import numpy as np

END_TOLERANCE = 1e-9


def tiou(start_a, end_a, start_b, end_b, floor=1.0):
    """Element-wise temporal IoU with the union floored at `floor` seconds (broadcasts)."""
    inter = np.clip(np.minimum(end_a, end_b) - np.maximum(start_a, start_b), 0.0, None)
    union = (end_a - start_a) + (end_b - start_b) - inter
    return inter / np.maximum(union, floor)


def greedy_nms(group, start, end, score, iou_threshold=0.3, floor=1.0, tie=None):
    """Keep-mask of greedy NMS run independently inside each group (e.g. stream x class).

    Candidates are padded into a (groups x G) table, G = largest group (at most the number of
    anchors), and the greedy rule "kept unless a kept higher-ranked one overlaps" is solved as the
    fixed point of keep <- not any(keep_before & overlap); it is reached in at most G rounds and
    is unique, hence equal to the sequential greedy result.
    """
    n = len(group)
    keep = np.zeros(n, dtype=bool)
    if n == 0:
        return keep
    tie = np.arange(n) if tie is None else np.asarray(tie)
    order = np.lexsort((tie, -np.asarray(score, dtype=np.float64), group))
    sorted_group = group[order]
    first = np.r_[True, sorted_group[1:] != sorted_group[:-1]]
    group_index = np.cumsum(first) - 1
    group_start = np.flatnonzero(first)
    rank = np.arange(n) - group_start[group_index]
    n_groups, width = len(group_start), int(rank.max()) + 1
    starts = np.zeros((n_groups, width))
    ends = np.zeros((n_groups, width))
    valid = np.zeros((n_groups, width), dtype=bool)
    starts[group_index, rank] = start[order]
    ends[group_index, rank] = end[order]
    valid[group_index, rank] = True
    overlap = tiou(starts[:, :, None], ends[:, :, None], starts[:, None, :], ends[:, None, :], floor) > iou_threshold
    earlier = np.tri(width, width, -1, dtype=bool).T          # [i, j] True when i ranks before j
    overlap &= earlier[None] & valid[:, :, None] & valid[:, None, :]
    kept = valid.copy()
    while True:
        suppressed = np.einsum("gi,gij->gj", kept.astype(np.int64), overlap.astype(np.int64)) > 0
        updated = valid & ~suppressed
        if np.array_equal(updated, kept):
            break
        kept = updated
    keep[order] = kept[group_index, rank]
    return keep


class OnlineNMS:
    """Online NMS state for `n_streams` streams: the final, emitted proposals of each stream."""

    def __init__(self, n_streams, num_classes, iou_threshold=0.3, tiou_floor=1.0):
        if not 0.0 <= iou_threshold < 1.0:
            raise ValueError(f"online NMS tIoU threshold must be in [0, 1), got {iou_threshold}")
        if not tiou_floor > 0:
            raise ValueError(f"tIoU floor must be > 0 seconds, got {tiou_floor}")
        self.n_streams, self.num_classes = int(n_streams), int(num_classes)
        self.iou_threshold, self.tiou_floor = float(iou_threshold), float(tiou_floor)
        self.keys = np.zeros(0, dtype=np.complex128)   # group + 1j * start, sorted
        self.ends = np.zeros(0, dtype=np.float64)
        self.longest = np.zeros(self.n_streams * self.num_classes)   # longest emitted length per group

    def __len__(self):
        return len(self.keys)

    def _suppressed_by_history(self, group, start, end):
        """True where an emitted proposal of the same group has tIoU > threshold with the candidate."""
        if len(self.keys) == 0 or len(group) == 0:
            return np.zeros(len(group), dtype=bool)
        # conservative by 1e-9 s against rounding; the exact test below decides
        low = group + 1j * (start - self.longest[group] - 1e-9)
        high = group + 1j * end
        lo = np.searchsorted(self.keys, low, side="right")
        hi = np.searchsorted(self.keys, high, side="left")
        counts = np.maximum(hi - lo, 0)
        total = int(counts.sum())
        if total == 0:
            return np.zeros(len(group), dtype=bool)
        owner = np.repeat(np.arange(len(group)), counts)
        offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
        index = np.repeat(lo, counts) + offsets
        overlap = tiou(start[owner], end[owner], self.keys[index].imag, self.ends[index], self.tiou_floor)
        return np.bincount(owner, weights=overlap > self.iou_threshold, minlength=len(group)) > 0

    def step(self, stream, label, start, end, score, now, tie=None):
        """One step of all streams: candidates (flat arrays) and each candidate's `now` (seconds).

        Returns the boolean mask of the candidates emitted at this step; they join the history.
        """
        stream = np.asarray(stream, dtype=np.int64)
        label = np.asarray(label, dtype=np.int64)
        start, end = np.asarray(start, dtype=np.float64), np.asarray(end, dtype=np.float64)
        group = stream * self.num_classes + label
        kept = greedy_nms(group, start, end, score, self.iou_threshold, self.tiou_floor, tie)
        ready = kept & (end <= np.asarray(now, dtype=np.float64) + END_TOLERANCE)
        candidates = np.flatnonzero(ready)
        fresh = ~self._suppressed_by_history(group[candidates], start[candidates], end[candidates])
        emitted = np.zeros(len(group), dtype=bool)
        emitted[candidates[fresh]] = True
        self._remember(group[emitted], start[emitted], end[emitted])
        return emitted

    def _remember(self, group, start, end):
        if len(group) == 0:
            return
        keys = group + 1j * start
        order = np.argsort(keys, kind="stable")
        keys, ends = keys[order], end[order]
        where = np.searchsorted(self.keys, keys, side="right")
        self.keys = np.insert(self.keys, where, keys)
        self.ends = np.insert(self.ends, where, ends)
        np.maximum.at(self.longest, group, end - start)
