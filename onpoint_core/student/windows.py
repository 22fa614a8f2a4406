"""Training windows: every (video, step) sample of a set of videos, with its targets, in flat
tensors so a batch is gathered with one index operation.

Layout: the videos' features are stacked with W-1 zero rows in front of each video, so the window
of step t of a video is the W consecutive rows ending at that step (left zero padding for free).
Per-step targets (anchor assignment, point targets, future actions from the teacher's class
probabilities) are computed once per video
by `targets.py` and stacked in step order; the teacher CAS is stacked in the padded layout so its
window slice uses the same row indices as the features.
"""

from __future__ import annotations

import numpy as np
import torch

from .targets import future_targets, instance_targets, point_targets


class WindowData:
    def __init__(self, videos, num_classes, window, anchors, anticipation, device="cpu"):
        if not videos:
            raise ValueError("no videos to train on")
        self.window = int(window)
        pad = self.window - 1
        feature_dim = videos[0].features.shape[1]
        num_out = num_classes + 1
        rows, cas_rows, valid_rows, targets = [], [], [], {k: [] for k in (
            "classes", "regression", "positive", "point_classes", "point_offset", "has_point", "future")}
        window_start = []           # padded-row index of each sample's first window row
        video_index = []
        offset = 0
        for i, video in enumerate(videos):
            n = video.num_steps
            rows += [np.zeros((pad, feature_dim), np.float32), video.features]
            valid_rows += [np.zeros(pad, bool), np.ones(n, bool)]
            cas = video.teacher_cas if video.teacher_cas is not None else np.zeros((n, num_out), np.float32)
            cas_rows += [np.zeros((pad, num_out), np.float32), cas]
            window_start.append(offset + np.arange(n))
            video_index.append(np.full(n, i))
            offset += pad + n
            rate = video.rate
            cls, reg, pos = instance_targets(n, anchors, video.segments * rate, video.segment_labels, num_classes)
            pcls, poff, phas = point_targets(n, anchors, video.points * rate, video.point_labels, num_classes)
            targets["classes"].append(cls)
            targets["regression"].append(reg)
            targets["positive"].append(pos)
            targets["point_classes"].append(pcls)
            targets["point_offset"].append(poff)
            targets["has_point"].append(phas)
            targets["future"].append(future_targets(video.teacher_class_prob, anticipation)
                                     if video.teacher_class_prob is not None
                                     else np.zeros((n, num_classes), np.float32))
        to = lambda a: torch.from_numpy(np.ascontiguousarray(np.concatenate(a))).to(device)  # noqa: E731
        self.features = to(rows)
        self.cas = to(cas_rows)
        self.valid = to(valid_rows)
        self.window_start = to(window_start)
        self.video_index = np.concatenate(video_index)
        self.has_future_targets = any(v.teacher_class_prob is not None for v in videos)
        self.targets = {k: to(v) for k, v in targets.items()}
        self.offsets = torch.arange(self.window, device=device)

    def __len__(self):
        return len(self.window_start)

    def batch(self, samples):
        """Inputs and targets of the samples (a LongTensor of sample indices)."""
        rows = self.window_start[samples][:, None] + self.offsets          # B x W
        out = {name: t[samples] for name, t in self.targets.items()}
        out["windows"] = self.features[rows]
        out["cas"] = self.cas[rows]
        out["valid"] = self.valid[rows]
        return out

    def epoch_samples(self, epoch, stride, seed):
        """This epoch's samples in training order: every `stride`-th step (the phase moves with
        the epoch so successive epochs see different steps), shuffled by a seeded generator."""
        phase = epoch % stride
        chosen = torch.arange(phase, len(self), stride)
        generator = torch.Generator().manual_seed(int(seed) * 1000 + int(epoch))
        return chosen[torch.randperm(len(chosen), generator=generator)]
