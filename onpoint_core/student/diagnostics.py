"""Metrics that show whether two OnPoint modules can do their job (issue: "a module is done when
a metric shows it doing its job", not when a test shows it runs).

- `anticipation_positive_rate`: the share of training windows whose anticipation target has at
  least one positive class. A head trained on targets that are almost never positive learns
  "nothing ahead".
- `calibration_gap`: on the val videos, the mean calibration bias r + log r that the trained
  decoder adds to the attention logits of frames inside ground-truth actions, minus that of
  background frames. The bias is meant to shut background out; a gap near 0 means it cannot.
  This is a metric: it is the only place the student stage reads ground-truth segments (of the
  val videos), after training; training never sees them.
"""

from __future__ import annotations

import numpy as np
import torch

EVAL_BATCH = 256       # windows per forward pass for the val diagnostics (no effect on results)


def anticipation_positive_rate(windows):
    """Share of the training windows (WindowData) with a positive anticipation target; None when
    the run has no anticipation targets at all (no teacher class probabilities)."""
    future = windows.targets["future"]
    if not future.numel() or not windows.has_future_targets:
        return None
    return float((future.sum(dim=1) > 0).float().mean())


def _windows_of(features, window, steps):
    """The windows of the last `window` steps ending at `steps` (zero-padded before the start): S x W x D."""
    pad = np.zeros((window - 1, features.shape[1]), np.float32)
    padded = np.concatenate([pad, features])
    return padded[steps[:, None] + np.arange(window)[None, :]]


def _inside(steps, rate, segments):
    """Which steps have their centre inside a segment [start, end) (seconds)."""
    centre = (steps + 0.5) / rate
    inside = np.zeros(len(steps), bool)
    for start, end in segments:
        inside |= (centre >= start) & (centre < end)
    return inside


@torch.no_grad()
def calibration_gap(model, dataset, subset="val", stride=2):
    """Mean bias on action frames minus on background frames, over the windows of every
    `stride`-th step of the `subset` videos; None without calibration or without such videos."""
    if not model.config["calibration"] or not dataset.video_ids(subset):
        return None
    window = model.config["window"]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    sums, counts = np.zeros(2), np.zeros(2)          # [background, action]
    for video_id in dataset.video_ids(subset):
        features = np.asarray(dataset.features(video_id), np.float32)
        rate = len(features) / float(dataset.video(video_id)["duration"])
        gt = dataset.segments_of(video_id)[["start", "end"]].to_numpy(np.float64)   # metric only
        steps = np.arange(0, len(features), stride)
        all_windows = _windows_of(features, window, steps)
        for begin in range(0, len(steps), EVAL_BATCH):
            chunk = torch.from_numpy(all_windows[begin:begin + EVAL_BATCH]).to(device)
            out = model(chunk, heads="inference")
            bias = model.calibration_bias(out["cas"].float())[:, 0, 0, :].cpu().numpy()   # B x W
            frame_steps = steps[begin:begin + EVAL_BATCH, None] - (window - 1) + np.arange(window)[None, :]
            real = frame_steps >= 0                                          # padding frames are not frames
            action = _inside(np.clip(frame_steps, 0, None).ravel(), rate, gt).reshape(frame_steps.shape)
            for kind, mask in ((0, real & ~action), (1, real & action)):
                sums[kind] += float(bias[mask].sum())
                counts[kind] += int(mask.sum())
    model.train(was_training)
    if not counts.all():
        return None
    background, action = sums / counts
    return float(action - background)
