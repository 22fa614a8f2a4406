"""Anchor predictions -> candidate segments, vectorized over streams x anchors.

Time conventions (shared by the whole `online` package):
- a stream's step t (0-based) covers [t, t+1) / rate seconds, rate = n_steps / duration;
- when step t arrives, "now" = t + 1 in step units = (t + 1) / rate seconds, and anything
  emitted at step t has gen_time = now;
- anchor j of length L_j steps spans [now - L_j, now) in step units (it ends at the current step).

Candidates come out in seconds, start clipped to >= 0. A candidate whose end is <= 0 lies wholly
before the stream began and is dropped (clipping its start would make start > end).
The probabilities are computed on the model's device; only the per-anchor best class, its
probability and the two regression numbers travel to the CPU, where times are computed in
float64 so that one stream and many batched streams give the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Candidates:
    """Flat arrays, one entry per candidate: which stream and anchor, action class, times in seconds."""

    stream: np.ndarray   # int64
    anchor: np.ndarray   # int64
    label: np.ndarray    # int64, action class index (background excluded)
    start: np.ndarray    # float64 seconds
    end: np.ndarray      # float64 seconds
    score: np.ndarray    # float64

    def __len__(self):
        return len(self.stream)

    def take(self, index):
        return Candidates(*(getattr(self, name)[index] for name in _FIELDS))

    @classmethod
    def empty(cls):
        ints, floats = np.zeros(0, np.int64), np.zeros(0, np.float64)
        return cls(ints, ints.copy(), ints.copy(), floats, floats.copy(), floats.copy())


_FIELDS = ("stream", "anchor", "label", "start", "end", "score")


def _best_action(logits):
    """Per anchor: (probability, index) of the most likely action class under softmax over C+1."""
    probs = torch.softmax(torch.as_tensor(logits).float(), dim=-1)[..., :-1]   # background is last
    return probs.max(dim=-1)


def host_arrays(stacked):
    """S x M x k tensor -> k float64 S x M numpy arrays, in one device->host transfer."""
    stacked = stacked.cpu().numpy().astype(np.float64)
    return [stacked[..., i] for i in range(stacked.shape[-1])]


def _finish(keep, label, start_steps, end_steps, score, rates):
    """Select kept anchors, convert steps to seconds, clip the start, drop segments ending at <= 0."""
    rows, cols = np.nonzero(keep)
    rate = rates[rows]
    start = np.maximum(start_steps[rows, cols] / rate, 0.0)
    end = end_steps[rows, cols] / rate
    valid = end > 0
    return Candidates(rows[valid].astype(np.int64), cols[valid].astype(np.int64),
                      label[rows, cols][valid].astype(np.int64), start[valid], end[valid],
                      score[rows, cols][valid])


def _prepare(anchors, now_steps, rates):
    anchors = np.asarray(anchors, dtype=np.float64)
    now_steps = np.asarray(now_steps, dtype=np.float64)
    rates = np.asarray(rates, dtype=np.float64)
    return anchors[None, :], now_steps[:, None], rates


def instance_candidates(arrays, anchors, now_steps, rates, score_threshold=0.1):
    """Candidates from `head_arrays(outputs, "instance")`: (score, label, z0, z1) (see decode_instances)."""
    score, label, z0, z1 = arrays
    lengths, now, rates = _prepare(anchors, now_steps, rates)
    end_steps = now + lengths * z0
    with np.errstate(over="ignore"):
        start_steps = end_steps - lengths * np.exp(z1)
    keep = score >= score_threshold
    return _finish(keep, label, start_steps, end_steps, score, rates)


def decode_instances(class_logits, regression, anchors, now_steps, rates, score_threshold=0.1):
    """OAT decode of the instance heads.

    class_logits S x M x (C+1), regression S x M x 2 (z0, z1); anchors: M lengths in steps;
    now_steps, rates: per stream (S). Per anchor the argmax action class is kept when its
    softmax probability >= score_threshold; end = now + L*z0, length = L*exp(z1),
    start = end - length (steps, then seconds); score = that probability.
    """
    return decode({"class_logits": class_logits, "regression": regression}, "instance", anchors, now_steps, rates,
                  score_threshold)


def point_candidates(arrays, anchors, now_steps, rates, score_threshold=0.1):
    """Candidates from `head_arrays(outputs, "point")`: (score, label, offset) (see decode_points)."""
    score, label, offset = arrays
    lengths, now, rates = _prepare(anchors, now_steps, rates)
    shift = np.clip(offset, -0.5, 0.5) * lengths
    end_steps = now - shift
    start_steps = end_steps - lengths
    keep = score > score_threshold
    return _finish(keep, label, start_steps, end_steps, score, rates)


def decode_points(point_logits, point_offset, anchors, now_steps, rates, score_threshold=0.1):
    """Decode of the point heads (distillation-free run, docs/method.md 5).

    point_logits S x M x (C+1), point_offset S x M. Per anchor the argmax action class is kept when
    its probability > score_threshold (strict, as the method text words it). The point head regresses
    the signed d = (centre - point) / L (clipped into [-0.5, 0.5], the span of the anchor), so the
    decoded point is centre - d*L and the segment is the anchor's length centred on it:
    start = now - L - d*L, end = now - d*L. A point in the newer half of the anchor (d < 0) gives
    a segment that ends after now; the online NMS holds it back, and the same point is decoded
    complete from a later step. (The method text regresses |d| and shifts toward the past, which
    puts every such segment on the wrong side of its point: a documented departure.)
    """
    return decode({"point_logits": point_logits, "point_offset": point_offset}, "point", anchors, now_steps, rates,
                  score_threshold)


MODES = ("instance", "point")


def head_tensor(outputs, mode):
    """On the model's device: S x M x k float32, per anchor the best action's probability, its
    class index, then the head's numbers ((z0, z1) for "instance", the offset for "point")."""
    if mode == "instance":
        score, label = _best_action(outputs["class_logits"])
        regression = torch.as_tensor(outputs["regression"])
        parts = (score, label, regression[..., 0], regression[..., 1])
    elif mode == "point":
        score, label = _best_action(outputs["point_logits"])
        parts = (score, label, torch.as_tensor(outputs["point_offset"]))
    else:
        raise ValueError(f"unknown inference mode {mode!r} (expected 'instance' or 'point')")
    return torch.stack([t.float() for t in parts], dim=-1)


def head_arrays(outputs, mode):
    """The decode's inputs for `mode` as float64 CPU arrays (S x M each), in one transfer.

    The engine checks these for NaN/inf (a non-finite logit makes its anchor's score NaN), so the
    check costs no second device sync.
    """
    return host_arrays(head_tensor(outputs, mode))


def candidates(arrays, mode, anchors, now_steps, rates, score_threshold=0.1):
    """Candidates from `head_arrays(outputs, mode)`."""
    build = instance_candidates if mode == "instance" else point_candidates
    return build(arrays, anchors, now_steps, rates, score_threshold)


def decode(outputs, mode, anchors, now_steps, rates, score_threshold=0.1):
    """The one decode path: `mode` is the checkpoint's variant["inference"] ("instance" | "point")."""
    return candidates(head_arrays(outputs, mode), mode, anchors, now_steps, rates, score_threshold)
