"""HR-Pro teacher: seed selection around the points, focal point/background losses, prototype contrast."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def select_seeds(bkg, point_steps, point_labels, num_classes, bkg_threshold=0.95, action_threshold=0.1):
    """HR-Pro seed selection on one video's background score -> (action seeds T x C bool, background seeds T bool).

    Background seeds, in the regions the points cut the video into (points themselves excluded):
    before the first point, every step up to the last one with bkg >= threshold (or up to the
    argmax when none is); after the last point, every step from the first such one (or from the
    argmax); between two points, the span from the first to the last such step when there are at
    least two, otherwise the argmax (plus the single such step). Action seeds: the points, grown
    outward while bkg <= action_threshold and not a background seed, never past the neighbouring
    point; grown steps take the point's class(es). Loops run over points, not steps.
    """
    bkg = np.asarray(bkg, dtype=np.float64).reshape(-1)
    n = bkg.size
    act = np.zeros((n, num_classes), dtype=bool)
    bseed = np.zeros(n, dtype=bool)
    steps = np.asarray(point_steps, dtype=np.int64).reshape(-1)
    if steps.size == 0 or n == 0:
        return act, bseed
    act[steps, np.asarray(point_labels, dtype=np.int64).reshape(-1)] = True
    pts = np.unique(steps)
    high = bkg >= bkg_threshold
    if pts[0] > 0:                                          # before the first point
        region = high[:pts[0]]
        last = np.flatnonzero(region)[-1] if region.any() else int(np.argmax(bkg[:pts[0]]))
        bseed[:last + 1] = True
    if pts[-1] < n - 1:                                     # after the last point
        lo = pts[-1] + 1
        region = high[lo:]
        first = np.flatnonzero(region)[0] if region.any() else int(np.argmax(bkg[lo:]))
        bseed[lo + first:] = True
    for a, b in zip(pts[:-1], pts[1:]):                     # between consecutive points
        if b - a <= 1:
            continue
        idx = np.flatnonzero(high[a + 1:b]) + a + 1
        bseed[idx] = True
        if idx.size >= 2:
            bseed[idx[0]:idx[-1] + 1] = True
        else:
            bseed[a + 1 + int(np.argmax(bkg[a + 1:b]))] = True
    grow = (bkg <= action_threshold) & ~bseed
    bounds = np.concatenate([[-1], pts, [n]])
    for i, p in enumerate(pts):
        row = act[p]
        lo, hi = bounds[i] + 1, bounds[i + 2]               # neighbouring points (exclusive)
        left = grow[lo:p][::-1]
        stop = np.flatnonzero(~left)
        k = stop[0] if stop.size else left.size
        act[p - k:p] |= row
        right = grow[p + 1:hi]
        stop = np.flatnonzero(~right)
        k = stop[0] if stop.size else right.size
        act[p + 1:p + 1 + k] |= row
    return act, bseed


def focal_bce(cas, target, weight):
    """Per-video focal BCE (weights (1-p)^2 on positives, p^2 on negatives) summed over channels and
    the weighted steps, divided by the number of weighted steps; then summed over the batch."""
    p = cas.clamp(1e-6, 1 - 1e-6)
    bce = -(target * torch.log(p) + (1 - target) * torch.log(1 - p))
    focal = ((1 - p) * target + p * (1 - target)) ** 2
    per_step = (focal * bce).sum(-1) * weight
    return (per_step.sum(1) / (weight.sum(1) + 1e-6)).sum()


def contrastive(emb, prototypes, act_seed, bkg_seed, temperature):
    """Prototype contrastive loss summed over videos (see module docstring); emb B x T x D.

    a[b, c, k] = mean over video b's class-c action seeds of exp(cos(emb, proto_k) / temperature),
    computed as one einsum of exp(cos / T - 1 / T) in float64 (the shift keeps every term in
    (0, 1], float64 keeps small temperatures from underflowing), so no per-pair gathers are needed.
    """
    pair = act_seed.any(1) & bkg_seed.any(1)[:, None]                       # B x C: (video, class) pairs
    if not bool(pair.any()):
        return emb.sum() * 0.0
    inv_t = 1.0 / temperature
    sim = F.normalize(emb, dim=-1) @ F.normalize(prototypes, dim=-1).t()   # B x T x C, cosine
    e = torch.exp((sim.double() - 1.0) * inv_t)                            # exp(cos / T) / exp(1 / T)
    a_mask = act_seed.double()
    b_mask = bkg_seed.double()
    a = torch.einsum("btc,btk->bck", a_mask, e) / a_mask.sum(1).clamp(min=1)[..., None]   # B x C x C
    b = torch.einsum("bt,btk->bk", b_mask, e) / b_mask.sum(1).clamp(min=1)[:, None]       # B x C
    log_a = torch.log(a.clamp(min=1e-300))
    own = torch.diagonal(log_a, dim1=1, dim2=2)                             # B x C: log a[b, c, c]
    log_b = torch.log(b.clamp(min=1e-300))
    loss_act = -(own - torch.logsumexp(log_a, dim=2))
    loss_bkg = -(own - torch.logaddexp(own, log_b))
    per_pair = torch.where(pair, 0.5 * loss_act + 0.5 * loss_bkg, torch.zeros_like(own))
    per_video = per_pair.sum(1) / pair.sum(1).clamp(min=1)
    return per_video.sum().to(emb.dtype)
