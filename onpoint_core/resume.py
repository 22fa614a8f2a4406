"""Resume files of the three trainers (HR-Pro, TSASPC, the student): one reader, one writer.

A resume file holds everything a training loop needs to continue bit-identically (weights,
optimizer, RNG states, progress), as plain types and CPU tensors, so torch.load(weights_only=True)
reads it. It also holds a fingerprint of what it was made from; a file made from other inputs is
refused, naming what differs, rather than overwritten: it may hold a long run.
"""

from __future__ import annotations

import torch

from .errors import fail
from .io import atomic_file


def write_resume_file(path, state):
    """Save a teacher's training state atomically (plain types and CPU tensors only)."""
    with atomic_file(path, "wb") as handle:
        torch.save(state, handle)


def read_resume_file(path, tag, fingerprint):
    """A teacher's resume file at `path`, checked against this fit's inputs.

    `tag` names the teacher's format (stored under "format"). An unreadable file, another
    format, or a file made from other inputs is refused with a one-line OnPointError rather
    than overwritten: it may hold a long run.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same one-line error
        fail(path, f"cannot read the resume file ({type(exc).__name__}); delete it to start afresh")
    if not isinstance(state, dict) or state.get("format") != tag:
        fail(path, f"not a resume file of format {tag!r}; delete it to start afresh")
    saved = state.get("fingerprint") or {}
    differ = sorted(k for k in fingerprint.keys() | saved.keys() if saved.get(k) != fingerprint.get(k))
    if differ:
        fail(path, f"resume file ({tag}) was made from other inputs (differs in: {', '.join(differ)}); "
                   "delete it to start afresh")
    return state
