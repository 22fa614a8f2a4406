"""The student's window network as a TorchScript file (`onpoint export`), and streaming with it.

What is exported is the inference path of `OnlineStudent`: a batch of windows (B x W x feature_dim,
the last W steps, oldest first, zero-padded at the start of a stream) in, a dict of raw outputs
out (`cas`, `class_logits`, `regression`, `point_logits`, `point_offset`; the anticipation head
is training-only). Decoding and the online NMS stay in Python (`onpoint_core.online`), so an
exported network streams through the same `StreamingEngine` as the checkpoint it came from
(`load_exported`). The checkpoint's meta (classes, window, anchors, steps per second, which heads
decode, the online settings) travels inside the file as `onpoint_meta.json`, so the file is as
self-contained as the checkpoint.

TorchScript by tracing: the network has no data-dependent control flow at inference, and the
batch size stays dynamic (the test runs other batch sizes than the traced one). The traced file
reproduces the checkpoint's outputs exactly on CPU and loads in C++ (libtorch) too. torch 2.13
marks TorchScript deprecated in favour of `torch.export`; we tried that too: it also keeps the
batch size dynamic, but its decomposed attention differs from the eager network by up to 2e-5,
above the 1e-5 the export is held to, so TorchScript stays until that closes. The deprecation
and tracer warnings (attention's fast-path checks, constant at inference) are silenced here.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from torch import nn

from ..errors import OnPointError
from ..io import atomic_file
from .checkpoint import load_student

META_FILE = "onpoint_meta.json"
OUTPUT_KEYS = ("cas", "class_logits", "regression", "point_logits", "point_offset")


class InferencePath(nn.Module):
    """windows -> the inference outputs of the student, as a plain dict (what gets traced)."""

    def __init__(self, student):
        super().__init__()
        self.student = student

    def forward(self, windows):
        out = self.student(windows, heads="inference")
        return {key: out[key] for key in OUTPUT_KEYS}


class ExportedStudent(nn.Module):
    """A loaded TorchScript network behind the student's interface (`forward(windows, heads=...)`,
    `config`), so `StreamingEngine` runs it unchanged."""

    def __init__(self, scripted, config):
        super().__init__()
        self.scripted = scripted
        self.config = dict(config)

    def forward(self, windows, heads="inference"):
        if heads not in ("inference", "instance", "point"):     # not "all": no anticipation head
            raise ValueError("an exported student has the inference heads only")
        return self.scripted(windows)


def export_student(model_path, out_path, online=None):
    """Trace the checkpoint's network and write it with its meta; returns the meta written."""
    model, meta = load_student(model_path)
    config = meta["config"]
    example = torch.randn(2, int(config["window"]), int(config["feature_dim"]))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")     # TorchScript's deprecation notice and tracer warnings (see above)
        traced = torch.jit.trace(InferencePath(model).eval(), example, strict=False, check_trace=False)
    meta = {**meta, "exported_from": str(model_path)}
    if online is not None:
        meta["online"] = dict(online)
    out_path = Path(out_path)
    with atomic_file(out_path, "wb") as handle, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(traced, handle, _extra_files={META_FILE: json.dumps(meta)})
    return meta


def load_exported(path, device="cpu"):
    """(ExportedStudent on `device`, meta) of a file written by `export_student`."""
    extra = {META_FILE: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            scripted = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    except (RuntimeError, ValueError, OSError) as exc:
        raise OnPointError(f"{path}: not a TorchScript file written by onpoint export ({exc.__class__.__name__})") from None
    try:
        meta = json.loads(extra[META_FILE])
        config = meta["config"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise OnPointError(f"{path}: TorchScript file without the onpoint meta (not written by onpoint export)") from None
    return ExportedStudent(scripted, config).to(device).eval(), meta
