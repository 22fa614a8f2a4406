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


@contextlib.contextmanager
def atomic_dir(out):
    """Yield a temporary folder beside `out`; on success it replaces `out` in one rename.

    On any exception the temporary folder is removed and `out` is left as it was. If the swap
    itself fails halfway, the previous `out` is put back.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
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
