"""What a checkpoint records about the code that trained it: package version and git revision.

The revision is the last commit that changed the code the stage runs (its code deps in dvc.yaml),
not HEAD: committing a run's dvc.lock and metrics after training moves HEAD, and so does a commit
that edits code the stage does not import; neither reruns the stage, and a fresh clone of either
commit must rebuild a byte-identical checkpoint (otherwise `dvc repro` in the clone would rewrite
dvc.lock). `dirty` says that code differed from that commit when training ran. Outside a git
checkout (or without git) the revision is None.
"""

from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path

import yaml

CODE_PATHS = ("onpoint_core", "stages")     # without a dvc.yaml entry for the stage


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


def stage_code(root, stage):
    """The .py deps of `stage` in root/dvc.yaml, or None when there is no such entry."""
    try:
        stages = yaml.safe_load((Path(root) / "dvc.yaml").read_text()).get("stages", {})
        deps = stages[stage]["deps"]
    except (OSError, yaml.YAMLError, AttributeError, KeyError, TypeError):
        return None
    return [d for d in deps if isinstance(d, str) and d.endswith(".py")] or None


def code_revision(root=None, stage=None):
    """{"commit": sha or None, "dirty": bool} of the code of `stage` (or all code) under `root`."""
    root = Path(root or ".")
    paths = (stage_code(root, stage) if stage else None) or list(CODE_PATHS)
    paths = [p for p in paths if (root / p).exists()]
    commit = _git(["log", "-1", "--format=%H", "--", *paths], root) if paths else None
    if not commit:
        return {"commit": None, "dirty": False}
    status = _git(["status", "--porcelain", "--untracked-files=no", "--", *paths], root)
    return {"commit": commit, "dirty": bool(status)}


def provenance(stage, root=None):
    """The plain-dict record a checkpoint written by `stage` stores."""
    return {"package_version": package_version(), "code_revision": code_revision(root, stage)}
