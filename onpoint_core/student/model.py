"""The OnPoint student network (docs/method.md 4): OAT's window encoder and anchor decoder plus the
CASS predictor, the anticipation head, actionness-calibrated cross-attention and point heads.

The network sees one window of the last W steps and nothing else, so whatever it outputs for
step t depends on steps <= t only: the causality of the online student is a property of its
input, and `tests/test_student_model.py` checks it by perturbing the future of a source video.

Config: a plain dict (see `model_config`) stored in the checkpoint, so a checkpoint rebuilds its
own network without params.yaml.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

CALIBRATION_EPS = 1e-6
HEADS = ("all", "inference", "instance", "point")


SIZE_KEYS = ("d_model", "ffn_dim", "encoder_layers", "encoder_heads", "decoder_layers", "decoder_heads",
             "dropout", "position_dropout")


def network_sizes(student_cfg):
    """The keys of the student settings (config.StudentCfg) that shape the network."""
    return {key: getattr(student_cfg, key) for key in SIZE_KEYS}


def model_config(num_classes, feature_dim, streams, window, anchors, anticipation, *, d_model, ffn_dim,
                 encoder_layers, encoder_heads, decoder_layers, decoder_heads, dropout, position_dropout,
                 calibration=True):
    """The network's plain-dict config from the dataset facts and the network sizes; stored in
    the checkpoint, so it holds plain types only (every value explicit: no defaults here)."""
    d_model = int(d_model)
    return {
        "num_classes": int(num_classes),
        "feature_dim": int(feature_dim),
        "streams": int(streams),
        "window": int(window),
        "anchors": [int(a) for a in anchors],
        "anticipation": int(anticipation),
        "d_model": d_model,
        "encoder_layers": int(encoder_layers),
        "encoder_heads": int(encoder_heads),
        "decoder_layers": int(decoder_layers),
        "decoder_heads": int(decoder_heads),
        "ffn_dim": int(ffn_dim),
        "dropout": float(dropout),
        "position_dropout": float(position_dropout),
        "calibration": bool(calibration),
    }


def sinusoidal_positions(length, dim):
    position = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq)[:, : dim // 2]
    return table


def mlp(d_in, d_hidden, d_out):
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.ReLU(), nn.Linear(d_hidden, d_out))


class InputProjection(nn.Module):
    """Two-stream features (appearance half, motion half) get one Linear each to D/2, concatenated."""

    def __init__(self, feature_dim, streams, d_model):
        super().__init__()
        if streams == 2 and feature_dim % 2 == 0 and d_model % 2 == 0:
            self.split = feature_dim // 2
            self.streams = nn.ModuleList([nn.Linear(self.split, d_model // 2) for _ in range(2)])
        else:
            self.split = None
            self.streams = nn.ModuleList([nn.Linear(feature_dim, d_model)])

    def forward(self, x):
        if self.split is None:
            return self.streams[0](x)
        return torch.cat([self.streams[0](x[..., : self.split]), self.streams[1](x[..., self.split:])], dim=-1)


class CalibratedDecoderLayer(nn.Module):
    """Post-LN decoder layer whose cross-attention logits get an additive per-frame bias.

    DETR-style positions: the anchor queries' learned positions are added to the queries and keys
    of self-attention and to the cross-attention queries, and the window's sinusoidal positions to
    the cross-attention keys, so a query can find "the last L_j steps" from the first update on.
    (the method does not say where positions enter the decoder; this is our choice.)
    """

    def __init__(self, d_model, heads, ffn_dim, dropout):
        super().__init__()
        self.heads = heads
        self.self_attn = nn.MultiheadAttention(d_model, heads, dropout=dropout, batch_first=True)
        self.q = nn.Linear(d_model, d_model)
        self.k = nn.Linear(d_model, d_model)
        self.v = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)
        self.ffn = nn.Sequential(nn.Linear(d_model, ffn_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn_dim, d_model))
        self.norms = nn.ModuleList([nn.LayerNorm(d_model) for _ in range(3)])
        self.dropout = nn.Dropout(dropout)
        self.attn_dropout = dropout

    def _split(self, x):
        batch, length, dim = x.shape
        return x.view(batch, length, self.heads, dim // self.heads).transpose(1, 2)

    def _self_attention(self, queries, query_pos):
        with_pos = queries + query_pos
        attended, _ = self.self_attn(with_pos, with_pos, queries, need_weights=False)
        return self.dropout(attended)

    def _cross_attention(self, queries, query_pos, memory, memory_pos, bias):
        q = self._split(self.q(queries + query_pos))
        k, v = self._split(self.k(memory + memory_pos)), self._split(self.v(memory))
        # bias: B x 1 x 1 x W, added to QK^T / sqrt(d) for every query and head
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=bias,
                                                  dropout_p=self.attn_dropout if self.training else 0.0)
        return self.dropout(self.out(attended.transpose(1, 2).reshape(queries.shape)))

    def forward(self, queries, query_pos, memory, memory_pos, bias):
        queries = self.norms[0](queries + self._self_attention(queries, query_pos))
        queries = self.norms[1](queries + self._cross_attention(queries, query_pos, memory, memory_pos, bias))
        return self.norms[2](queries + self.dropout(self.ffn(queries)))


class OnlineStudent(nn.Module):
    """Window of W steps in, per-frame CAS, future actionness and per-anchor predictions out.

    forward(windows B x W x feature_dim) returns a dict:
      cas            B x W x (C+1)  CASS prediction of the teacher CAS (raw values)
      anticipation   B x (C+1)      logits of "class occurs in the next W' steps" (training only)
      class_logits   B x M x (C+1)  instance classifier per anchor (softmax; background last)
      regression     B x M x 2      (z0, z1) per anchor
      point_logits   B x M x (C+1)  point classifier per anchor (background = no point inside)
      point_offset   B x M          (anchor centre - point) / anchor length, signed
    `heads` picks what is computed: "all" (training), "inference" (every head but the training-only
    anticipation head), or only the heads one decode reads: "instance" (class_logits, regression)
    or "point" (point_logits, point_offset); the streaming engine asks for its decode's heads only.
    """

    def __init__(self, config):
        super().__init__()
        self.config = dict(config)
        c = self.config
        d_model, num_out = c["d_model"], c["num_classes"] + 1
        self.project = InputProjection(c["feature_dim"], c["streams"], d_model)
        self.register_buffer("positions", sinusoidal_positions(c["window"], d_model), persistent=False)
        self.position_dropout = nn.Dropout(c["position_dropout"])
        layer = nn.TransformerEncoderLayer(d_model, c["encoder_heads"], c["ffn_dim"], c["dropout"],
                                           activation="gelu", batch_first=True, norm_first=False)
        self.encoder = nn.TransformerEncoder(layer, c["encoder_layers"], norm=nn.LayerNorm(d_model),
                                             enable_nested_tensor=False)
        self.cass = mlp(d_model, d_model, num_out)
        self.anticipation_frame = nn.Linear(d_model, d_model // 4)
        self.anticipation_head = mlp(c["window"] * (d_model // 4), d_model, num_out)
        # DETR-style anchor queries: content starts at zero (docs/method.md 4), and a learned position
        # per anchor (random init) tells the otherwise identical queries apart from the first step
        self.queries = nn.Parameter(torch.zeros(len(c["anchors"]), d_model))
        self.query_pos = nn.Parameter(torch.randn(len(c["anchors"]), d_model) * 0.1)
        self.decoder = nn.ModuleList([
            CalibratedDecoderLayer(d_model, c["decoder_heads"], c["ffn_dim"], c["dropout"])
            for _ in range(c["decoder_layers"])
        ])
        self.classifier = mlp(d_model, d_model, num_out)
        self.regressor = mlp(d_model, d_model, 2)
        self.point_classifier = mlp(d_model, d_model, num_out)
        self.point_regressor = mlp(d_model, d_model, 1)

    @property
    def num_anchors(self):
        return len(self.config["anchors"])

    def calibration_bias(self, cas):
        """r = clamp(1 - background CASS, eps, 1), bias = r + log(r): B x 1 x 1 x W (docs/method.md 4).

        The CASS head regresses the teacher's CAS values, which are probabilities, so its
        background channel is used as one. (A sigmoid on top, as for logits, squeezed r into
        [0.27, 0.5] and the bias into [-1.04, -0.19]: nearly constant, so it could not shut
        background frames out; `calibration_gap` in the student metrics measures the spread.)
        """
        actionness = (1.0 - cas[..., -1]).clamp(CALIBRATION_EPS, 1.0)
        bias = actionness + torch.log(actionness)
        return bias[:, None, None, :]

    def forward(self, windows, heads="all"):
        if heads not in HEADS:
            raise ValueError(f"heads must be one of {', '.join(HEADS)}, got {heads!r}")
        x = self.project(windows) + self.positions
        memory = self.encoder(self.position_dropout(x))
        cas = self.cass(memory)
        bias = self.calibration_bias(cas) if self.config["calibration"] else None
        if bias is not None:
            bias = bias.to(memory.dtype)
        queries = self.queries.unsqueeze(0).expand(windows.shape[0], -1, -1)
        query_pos = self.query_pos.unsqueeze(0)
        for layer in self.decoder:
            queries = layer(queries, query_pos, memory, self.positions, bias)
        out = {"cas": cas}
        if heads != "point":
            out["class_logits"] = self.classifier(queries)
            out["regression"] = self.regressor(queries)
        if heads != "instance":
            out["point_logits"] = self.point_classifier(queries)
            out["point_offset"] = self.point_regressor(queries).squeeze(-1)
        if heads == "all":
            frames = self.anticipation_frame(memory).flatten(1)
            out["anticipation"] = self.anticipation_head(frames)
        return out


def count_parameters(model):
    return int(sum(p.numel() for p in model.parameters()))


def flops_per_step(model, heads="inference"):
    """FLOPs of one streaming step (one window through the inference path), counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode

    c = model.config
    param = next(model.parameters())
    window = torch.zeros(1, c["window"], c["feature_dim"], dtype=param.dtype, device=param.device)
    was_training = model.training
    model.eval()
    # the math attention kernel: torch's counter has no formula for the fused CPU kernel
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with FlopCounterMode(display=False) as counter, sdpa_kernel(SDPBackend.MATH):  # (not under no_grad:
        model(window, heads=heads)                                                # its module tracker fails)
    model.train(was_training)
    return int(counter.get_total_flops())
