"""The student's loss terms (docs/method.md 4) and their weighted sum for one run of the comparison.

L = alpha L_ins + beta L_cass + gamma L_ant + delta L_pnt; a term the run switches off is not
computed at all (so it cannot leak gradients), and it is reported as None.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def instance_loss(out, batch, regression_weight=1.0):
    """Soft-target cross-entropy over all anchors + L1 of (z0, z1) on positive anchors (averaged
    over the positive anchors' coordinates, as OAT does), the L1 scaled by `regression_weight`."""
    log_prob = F.log_softmax(out["class_logits"].float(), dim=-1)
    ce = -(batch["classes"] * log_prob).sum(-1).mean()
    positive = batch["positive"]
    if positive.any():
        l1 = (out["regression"].float()[positive] - batch["regression"][positive]).abs().mean()
    else:
        l1 = out["regression"].sum() * 0.0
    return ce + regression_weight * l1


def cass_loss(out, batch):
    """Squared error to the teacher CAS, summed over channels, averaged over the window's real
    frames (the zero padding in front of a video's first steps has no teacher CAS)."""
    error = (out["cas"].float() - batch["cas"]).pow(2).sum(-1)
    valid = batch["valid"].float()
    return (error * valid).sum() / valid.sum().clamp_min(1.0)


def anticipation_loss(out, batch):
    """BCE on 'action class c occurs in the next W' steps', summed over the C action classes."""
    logits = out["anticipation"].float()[:, :-1]
    return F.binary_cross_entropy_with_logits(logits, batch["future"], reduction="none").sum(-1).mean()


def point_loss(out, batch):
    """CE of the class of the point inside each anchor (background if none) + L1 of the
    normalised centre-to-point distance on anchors that hold a point."""
    logits = out["point_logits"].float()
    ce = F.cross_entropy(logits.flatten(0, 1), batch["point_classes"].flatten())
    has_point = batch["has_point"]
    if has_point.any():
        l1 = (out["point_offset"].float()[has_point] - batch["point_offset"][has_point]).abs().mean()
    else:
        l1 = out["point_offset"].sum() * 0.0
    return ce + l1


def total_loss(out, batch, variant, weights):
    """(weighted total, {term: float or None}); weights: alpha, beta, gamma, delta and the L1 scale
    `regression` inside L_ins (1 when absent)."""
    terms = {
        "ins": instance_loss(out, batch, weights["regression"]) if variant.instance_targets else None,
        "cass": cass_loss(out, batch) if variant.cass else None,
        "ant": anticipation_loss(out, batch) if variant.anticipation else None,
        "pnt": point_loss(out, batch) if variant.points else None,
    }
    scale = {"ins": weights["alpha"], "cass": weights["beta"], "ant": weights["gamma"], "pnt": weights["delta"]}
    active = [scale[k] * v for k, v in terms.items() if v is not None]
    total = torch.stack(active).sum()
    return total, {k: (None if v is None else float(v.detach())) for k, v in terms.items()}
