"""HR-Pro teacher network: reliability-aware attention over snippet + prototype tokens, fused CAS."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ReliabilityAwareBlock(nn.Module):
    """One attention layer over snippet + prototype tokens (queries/keys from 1x1 convs, values = x).

    A 1x1 Conv1d is a per-token linear map; nn.Linear computes the same thing without the
    conv kernel's overhead on CPU, so the "convs" below are Linear layers.
    """

    def __init__(self, dim, heads, attention_dropout, ffn_dim, dropout):
        super().__init__()
        self.heads = heads
        self.attention_dropout = attention_dropout
        self.conv_query = nn.Linear(dim, dim)
        self.conv_key = nn.Linear(dim, dim)
        self.in_query = nn.Linear(dim, dim)
        self.in_key = nn.Linear(dim, dim)
        self.in_value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn_dim, dim))
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)

    def _split(self, x):
        b, n, d = x.shape
        return x.view(b, n, self.heads, d // self.heads).transpose(1, 2)

    def forward(self, x, key_valid):
        """x: B x N x D tokens; key_valid: B x N bool, False for padded steps (never attended to)."""
        b, n, d = x.shape
        q = self._split(self.in_query(self.conv_query(x)))
        k = self._split(self.in_key(self.conv_key(x)))
        v = self._split(self.in_value(x))
        p = self.attention_dropout if self.training else 0.0
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=key_valid[:, None, None, :], dropout_p=p)
        att = self.out(att.transpose(1, 2).reshape(b, n, d))
        x = self.norm1(x + self.dropout1(att))
        return self.norm2(x + self.dropout2(self.ffn(x)))


class SnippetModel(nn.Module):
    def __init__(self, num_classes, feature_dim, cfg):
        super().__init__()
        dim = int(cfg.embed_dim)
        self.project = nn.Linear(feature_dim, dim) if feature_dim != dim else nn.Identity()   # 1x1 conv
        self.blocks = nn.ModuleList(
            ReliabilityAwareBlock(dim, cfg.heads, cfg.attention_dropout, cfg.ffn_dim, cfg.ffn_dropout)
            for _ in range(cfg.layers))
        self.embed = nn.Sequential(nn.Conv1d(dim, dim, 3, padding=1), nn.ReLU())
        self.classifier = nn.Sequential(nn.Dropout(cfg.classifier_dropout),
                                        nn.Conv1d(dim, num_classes + 1, 1, bias=False))
        # Class prototypes: model state (saved, used as tokens) but outside gradient descent.
        self.register_buffer("prototypes", torch.zeros(num_classes, dim))

    def forward(self, features, valid):
        """features: B x T x F (padded), valid: B x T bool -> (fused CAS B x T x (C+1), embedding
        B x T x D, un-fused class probabilities B x T x C).

        The fused CAS `sigmoid(class) * (1 - bkg)` is what HR-Pro's losses, proposals and the
        student's CAS distillation use; it rarely reaches 0.5 by construction. The un-fused class
        sigmoid is returned for inspection (it is above 0.5 on a quarter of all steps x classes, so
        the anticipation targets use a normalised fused CAS instead: teacher.class_probabilities).
        """
        b, t, _ = features.shape
        x = self.project(features)                                                   # B x T x D
        protos = self.prototypes.to(x.dtype).unsqueeze(0).expand(b, -1, -1)         # B x C x D
        tokens = torch.cat([x, protos], dim=1)
        key_valid = torch.cat([valid, valid.new_ones(b, protos.shape[1])], dim=1)
        for block in self.blocks:
            tokens = block(tokens, key_valid)
        x = tokens[:, :t] * valid.unsqueeze(-1).to(tokens.dtype)                    # padded steps read as zero padding
        emb = self.embed(x.transpose(1, 2))                                          # B x D x T
        cas = torch.sigmoid(self.classifier(emb)).transpose(1, 2)                   # B x T x (C+1)
        bkg = cas[..., -1:]
        fused = torch.cat([cas[..., :-1] * (1.0 - bkg), bkg], dim=-1)
        return fused, emb.transpose(1, 2), cas[..., :-1]
