"""TSASPC teacher losses: smoothing (T-MSE), stamp confidence, cluster distance."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import clustering

IGNORE = clustering.IGNORE


def smoothing_loss(logits, mask, clamp):
    """Truncated MSE between neighbouring log-probabilities (previous frame detached)."""
    lp = F.log_softmax(logits, dim=1)
    sq = (lp[:, :, 1:] - lp.detach()[:, :, :-1]) ** 2
    pair = mask[:, :, 1:] * mask[:, :, :-1]
    return (torch.clamp(sq, max=clamp) * pair).sum() / (pair.sum() * logits.shape[1]).clamp(min=1)


def confidence_loss(logits, away_cls, away_ok, toward_cls, toward_ok):
    """Penalise a stamp's class probability rising away from the stamp (both sides).

    For the frame pair (t, t+1) between stamps j and j+1: log p(c_j) must not rise (moving away
    from stamp j) and log p(c_{j+1}) must not fall (moving towards stamp j+1).
    away_cls/toward_cls: B x (T-1) class indices; *_ok: B x (T-1) float masks.
    """
    lp = F.log_softmax(logits, dim=1)
    diff = lp[:, :, 1:] - lp[:, :, :-1]
    rise = torch.gather(diff, 1, away_cls.unsqueeze(1)).squeeze(1)
    fall = -torch.gather(diff, 1, toward_cls.unsqueeze(1)).squeeze(1)
    per_video = ((F.relu(rise) * away_ok).sum(1) / away_ok.sum(1).clamp(min=1)
                 + (F.relu(fall) * toward_ok).sum(1) / toward_ok.sum(1).clamp(min=1))
    has = (away_ok.sum(1) > 0).float()
    return (per_video * has).sum() / has.sum().clamp(min=1)


def cluster_loss(hidden, stamp_at, labelled):
    """Mean distance of each labelled frame's normalised feature to its stamp's (B x d x T)."""
    h = F.normalize(hidden, p=2, dim=1)
    anchor = torch.gather(h, 2, stamp_at.unsqueeze(1).expand(-1, h.shape[1], -1))
    dist = torch.linalg.vector_norm(h - anchor, dim=1)
    return (dist * labelled).sum() / labelled.sum().clamp(min=1)
