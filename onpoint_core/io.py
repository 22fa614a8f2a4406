"""Atomic file and folder writes (a crash never leaves a half-written output behind), and the
checked read of a table another stage wrote."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _pid_alive(pid):
    """Whether process `pid` still runs on this machine (a temporary folder of a live writer is kept)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:      # it exists, owned by someone else
        return True
    return True


def _stale(entry, out_name, kind):
    """The writer pid of a `.OUT.<kind>-<pid>-...` leftover whose process is gone, else None."""
    prefix = f".{out_name}.{kind}-"
    if not entry.name.startswith(prefix):
        return None
    pid = entry.name[len(prefix):].split("-", 1)[0]
    if not pid.isdigit() or int(pid) == os.getpid() or _pid_alive(int(pid)):
        return None
    return int(pid)


def clean_stale(out):
    """Remove what a killed writer of `out` left beside it; put back a dataset it had moved aside.

    A kill -9 skips every `finally`, so the temporary folder of an unfinished write (often many GB)
    stays as `.OUT.tmp-<pid>-*`. If the kill hit the swap itself, the previous `out` sits in
    `.OUT.old-<pid>` while `out` is missing: it is restored, so nothing is lost. Leftovers of a
    process that still runs (another write in progress) are left alone.
    """
    out = Path(out)
    if not out.parent.is_dir():
        return
    for entry in sorted(out.parent.iterdir()):
        if _stale(entry, out.name, "old") is not None:
            if not out.exists():
                os.replace(entry, out)
            else:
                shutil.rmtree(entry, ignore_errors=True)
    for entry in out.parent.iterdir():
        if _stale(entry, out.name, "tmp") is not None and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(out):
    """Yield a temporary folder beside `out`; on success it replaces `out` in one rename.

    On any exception the temporary folder is removed and `out` is left as it was. If the swap
    itself fails halfway, the previous `out` is put back. The temporary names carry the pid, so
    the next write of `out` removes what a killed one left behind (`clean_stale`).
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=out.parent))
    os.chmod(tmp, 0o777 & ~_umask())   # mkdtemp makes 0700; outputs get the usual permissions
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
    try:
        os.replace(tmp, out)
    except BaseException:
        if old is not None:
            os.replace(old, out)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(path, mode="w"):
    """Open a temporary file beside `path` for writing; rename it over `path` when closed cleanly."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    os.chmod(tmp, 0o666 & ~_umask())   # mkstemp makes 0600; outputs get the usual permissions
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class DuplicateKey(ValueError):
    """Raised by `unique_keys` for a JSON object that names one key twice."""

    def __init__(self, key, first, second, positions):
        super().__init__(f"key {key!r} appears twice")
        self.key, self.first, self.second, self.positions = key, first, second, positions

    def describe(self):
        """One line naming both entries, e.g. for the `database` mapping of an annotation file."""
        (i, j), key = self.positions, self.key
        if isinstance(self.first, dict) and isinstance(self.second, dict):
            def entry(value):
                return f"subset {value.get('subset')!r}, duration {value.get('duration')!r}"
            return (f"video {key}: listed twice (entries {i} and {j}: {entry(self.first)}; {entry(self.second)}); "
                    f"JSON would keep only the second, so remove or rename one")
        return f"key {key!r} appears twice in one JSON object (items {i} and {j}); JSON would keep only the second"


def unique_keys(pairs):
    """`object_pairs_hook` for json.loads: a dict, or DuplicateKey for a repeated key.

    json.loads keeps the last of two equal keys silently; in an annotation file that turns a
    training video into a test video without a word.
    """
    result, position = {}, {}
    for index, (key, value) in enumerate(pairs):
        if key in result:
            raise DuplicateKey(key, result[key], value, (position[key] + 1, index + 1))
        result[key], position[key] = value, index
    return result


def write_json(path, obj):
    """Write `obj` as indented JSON, atomically (metrics files are read by DVC at any time)."""
    with atomic_file(path) as handle:
        json.dump(obj, handle, indent=2, sort_keys=False, default=_json_default)
        handle.write("\n")


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_parquet(path, frame):
    """Write a DataFrame to Parquet atomically, without the pandas index."""
    with atomic_file(path, "wb") as handle:
        frame.to_parquet(handle, index=False)


def save_npy(path, array):
    """Save one array as .npy atomically."""
    with atomic_file(path, "wb") as handle:
        np.save(handle, array)


def read_stage_table(path, columns, what):
    """A Parquet table written by an earlier stage, with `columns` checked; one-line errors that
    say which stage makes it (`what`, e.g. "points file ... the points stage")."""
    import pandas as pd

    from .errors import OnPointError

    try:
        table = pd.read_parquet(path)
    except FileNotFoundError:
        raise OnPointError(f"{path}: {what}") from None
    except Exception as exc:  # pyarrow raises several types for a corrupt or foreign file
        raise OnPointError(f"{path}: not a readable Parquet file ({exc.__class__.__name__})") from None
    missing = set(columns) - set(table.columns)
    if missing:
        raise OnPointError(f"{path}: missing columns {sorted(missing)}")
    return table
