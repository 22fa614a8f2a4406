"""TSASPC teacher network: MS-TCN (a two-branch first stage, refinement stages, dilated residual layers)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class _Residual(nn.Module):
    """Dilated residual layer: conv(k, dilation) -> ReLU -> 1x1 -> dropout -> + input."""

    def __init__(self, maps, kernel, dilation, dropout):
        super().__init__()
        self.conv = nn.Conv1d(maps, maps, kernel, padding=dilation * (kernel - 1) // 2, dilation=dilation)
        self.mix = nn.Conv1d(maps, maps, 1)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, mask):
        return (x + self.drop(self.mix(F.relu(self.conv(x))))) * mask


class _Stage(nn.Module):
    """Single-stage TCN: 1x1 in, dilated residual layers (dilation 2^i), 1x1 out."""

    def __init__(self, in_dim, maps, out_dim, layers, kernel, dropout):
        super().__init__()
        self.inp = nn.Conv1d(in_dim, maps, 1)
        self.layers = nn.ModuleList(_Residual(maps, kernel, 2 ** i, dropout) for i in range(layers))
        self.out = nn.Conv1d(maps, out_dim, 1)

    def forward(self, x, mask):
        h = self.inp(x) * mask
        for layer in self.layers:
            h = layer(h, mask)
        return h, self.out(h) * mask


class MSTCN(nn.Module):
    """Stage 1 = two parallel TCNs (kernel 3 and 5) summed; then refinement stages on softmax."""

    def __init__(self, input_dim, feature_dim, num_outputs, stages, layers, maps, dropout, input_dropout):
        super().__init__()
        self.input_drop = nn.Dropout1d(input_dropout)
        self.project = nn.Conv1d(input_dim, feature_dim, 1) if input_dim != feature_dim else None
        self.tower = nn.ModuleList(_Stage(feature_dim, maps, num_outputs, layers, k, dropout) for k in (3, 5))
        self.refine = nn.ModuleList(_Stage(num_outputs, maps, num_outputs, layers, 3, dropout)
                                    for _ in range(stages - 1))

    def forward(self, x, mask):
        """x: B x D x T, mask: B x 1 x T. Returns (last-stage features B x maps x T, S x B x (C+1) x T logits)."""
        x = self.input_drop(x)
        if self.project is not None:
            x = self.project(x) * mask
        (h3, o3), (h5, o5) = (stage(x, mask) for stage in self.tower)
        hidden, logits = h3 + h5, o3 + o5
        outputs = [logits]
        for stage in self.refine:
            hidden, logits = stage(F.softmax(logits, dim=1) * mask, mask)
            outputs.append(logits)
        return hidden, torch.stack(outputs)
