"""What a checkpoint records about the code that trained it, reproducibly.

A checkpoint is a DVC output: a fresh clone's `dvc repro` must rebuild it byte for byte, or the
clone's dvc.lock would change. So the checkpoint stores only facts that follow from its stage's
inputs: the package version (`onpoint_core.__version__`, in a file every stage depends on) and a
SHA-256 of the code the stage runs (its .py deps in dvc.yaml, path and bytes). A git commit id
would not do: running before committing, a queued experiment's uncommitted workspace, a shallow
clone or a tarball all give another id (or none) for the same code. The commit, and whether the
code differed from it, go to the stage's run log (logs/<stage>.json) instead, and `onpoint card`
says whether the checkout's code still hashes to the checkpoint's.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import yaml

from . import __version__

CODE_PATHS = ("onpoint_core", "stages")     # without a dvc.yaml entry for the stage


def stage_code(root, stage):
    """The .py deps of `stage` in root/dvc.yaml (sorted), or None when there is no such entry."""
    try:
        stages = yaml.safe_load((Path(root) / "dvc.yaml").read_text()).get("stages", {})
        deps = stages[stage]["deps"]
    except (OSError, yaml.YAMLError, AttributeError, KeyError, TypeError):
        return None
    return sorted(d for d in deps if isinstance(d, str) and d.endswith(".py")) or None


def _code_files(root, stage):
    root = Path(root)
    listed = stage_code(root, stage) if stage else None
    if listed is not None:
        return [p for p in listed if (root / p).is_file()]
    return sorted(str(p.relative_to(root)) for folder in CODE_PATHS for p in (root / folder).rglob("*.py"))


def code_hash(root=".", stage=None):
    """SHA-256 over (path, bytes) of the stage's code files: the same code gives the same hash on
    any machine, with or without git."""
    digest = hashlib.sha256()
    for name in _code_files(root, stage):
        digest.update(name.encode() + b"\0" + (Path(root) / name).read_bytes() + b"\0")
    return digest.hexdigest()


def _git(args, cwd):
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_revision(root=".", stage=None):
    """{"commit": HEAD or None, "dirty": whether the stage's code differs from it (untracked files
    included)}: for the run log, not for outputs."""
    commit = _git(["rev-parse", "HEAD"], root)
    if not commit:
        return {"commit": None, "dirty": None}
    status = _git(["status", "--porcelain", "--untracked-files=all", "--", *_code_files(root, stage)], root)
    return {"commit": commit, "dirty": bool(status)}


def provenance(stage, root="."):
    """The plain-dict record a checkpoint written by `stage` stores."""
    return {"package_version": __version__, "code_sha256": code_hash(root, stage)}
