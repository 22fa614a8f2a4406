"""Self-contained student checkpoints (docs/formats.md): weights, network config, class names, window,
anchors, feature rate and the run that trained it; `onpoint stream` needs nothing else.

Plain Python types and tensors only, so `torch.load(weights_only=True)` reads it.
"""

from __future__ import annotations

import torch

from ..errors import OnPointError
from ..io import atomic_file
from .model import OnlineStudent

FORMAT = "onpoint-student"
VERSION = 1


def save_student(path, model, classes, run, variant, steps_per_second, extra=None):
    model = getattr(model, "module", model)      # unwrap DDP
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": dict(model.config),
        "state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "classes": [str(c) for c in classes],
        "run": str(run),
        "variant": dict(variant),
        "steps_per_second": float(steps_per_second),
        "extra": dict(extra or {}),
    }
    with atomic_file(path, "wb") as handle:
        torch.save(payload, handle)


def load_student(path, device="cpu"):
    """(model in eval mode on `device`, payload without the weights); one-line errors for bad files."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise OnPointError(f"{path}: student checkpoint not found (run the student_train stage)") from None
    except Exception as exc:   # torch raises several types for truncated or foreign files
        raise OnPointError(f"{path}: not a readable student checkpoint ({exc.__class__.__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise OnPointError(f"{path}: not an OnPoint student checkpoint")
    if payload.get("version") != VERSION:
        raise OnPointError(f"{path}: student checkpoint version {payload.get('version')!r}, this code reads "
                           f"version {VERSION}; retrain with this version (dvc repro)")
    model = OnlineStudent(payload["config"])
    try:
        model.load_state_dict(payload["state"])
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise OnPointError(f"{path}: weights do not fit the stored network config ({first})") from None
    model.to(device).eval()
    meta = {k: v for k, v in payload.items() if k != "state"}
    return model, meta
