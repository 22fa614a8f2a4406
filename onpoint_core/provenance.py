"""What a checkpoint records about the code that trained it: package version and git revision.

The revision is the last commit that changed the code (`onpoint_core/`, `stages/`), not HEAD:
committing a run's dvc.lock and metrics after training moves HEAD without changing the code, and
a fresh clone of that commit must rebuild a byte-identical checkpoint (otherwise `dvc repro` in
the clone would rewrite dvc.lock). `dirty` says the code differed from that commit when training
ran. Outside a git checkout (or without git) the revision is None.
"""

from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path

CODE_PATHS = ("onpoint_core", "stages")


def package_version():
    try:
        return metadata.version("onpoint")
    except metadata.PackageNotFoundError:
        return None


def _git(args, cwd):
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def code_revision(root=None):
    """{"commit": sha or None, "dirty": bool} of the code under `root` (default: the working directory)."""
    root = Path(root or ".")
    paths = [p for p in CODE_PATHS if (root / p).exists()]
    commit = _git(["log", "-1", "--format=%H", "--", *paths], root) if paths else None
    if not commit:
        return {"commit": None, "dirty": False}
    status = _git(["status", "--porcelain", "--untracked-files=no", "--", *paths], root)
    return {"commit": commit, "dirty": bool(status)}


def provenance(root=None):
    """The plain-dict record a checkpoint stores."""
    return {"package_version": package_version(), "code_revision": code_revision(root)}
