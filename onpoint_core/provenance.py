"""What a checkpoint records about the code that trained it, reproducibly.

A checkpoint is a DVC output: a fresh clone's `dvc repro` must rebuild it byte for byte, or the
clone's dvc.lock would change. So the checkpoint stores only facts that follow from its stage's
inputs: the package version (`onpoint_core.__version__`, in a file every stage depends on), a
SHA-256 of the code the stage runs (its .py deps in dvc.yaml, path and bytes) and the git blob id
of each of those files. The HEAD commit id would not do: the lock is committed after the run, so
the run never happens at the commit that records it, and running before committing, a queued
experiment's uncommitted workspace, a shallow clone or a tarball all give another id (or none)
for the same code. Blob ids are git's own content addresses, computed here without git, so they
rebuild byte for byte and still name a git revision: `code_commit` finds the commit that
introduced exactly that code (`onpoint card` prints it). HEAD at run time, and whether the code
differed from it, also go to the stage's run log (logs/<stage>.json).
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


def git_blob_id(data):
    """Git's object id of a file with these bytes (what `git hash-object` prints), without git."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def code_blobs(root=".", stage=None):
    """{path: git blob id} of the stage's code files."""
    return {name: git_blob_id((Path(root) / name).read_bytes()) for name in _code_files(root, stage)}


def code_commit(blobs, root="."):
    """The commit of HEAD's history that brought the stage's code files to exactly these blobs (the
    newest such commit, if the code ever returned to an earlier state): the revision a checkpoint
    was trained at. Every later commit up to the next change of one of these paths holds the same
    code. None without git, with an empty `blobs`, or when that code was never committed (a run on
    uncommitted changes)."""
    if not blobs:
        return None
    paths = sorted(blobs)
    touching = _git(["rev-list", "HEAD", "--", *paths], root)
    if not touching:
        return None
    for commit in touching.split():          # newest first: each starts the code state that follows it
        listing = _git(["ls-tree", "-r", commit, "--", *paths], root) or ""
        found = {}
        for line in listing.splitlines():
            meta, _, path = line.partition("\t")
            found[path] = meta.split()[2]
        if found == blobs:
            return commit
    return None


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
    return {"package_version": __version__, "code_sha256": code_hash(root, stage),
            "code_git_blobs": code_blobs(root, stage)}
