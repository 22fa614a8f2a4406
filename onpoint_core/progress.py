"""Progress that reads well on a terminal and in a log file, and the stage log under logs/.

On a terminal, long loops get tqdm bars. Anywhere else (a CI log, `dvc repro > run.log`, a DVC
queue worker) a bar becomes hundreds of carriage-return redraws and, when it clears itself, leaves
nothing behind; there each loop prints one line per `LINE_EVERY` of its length instead, and the
lines stay. `note()` prints a line that stays in both cases (the per-epoch summaries).

`stage_log(stage)` copies what a stage's Python code prints (sys.stdout and sys.stderr; not the
output of subprocesses it starts) into logs/<stage>.log, keeping the final state of each progress
line only, so the log of a run is readable afterwards even when it ran on a terminal.
"""

from __future__ import annotations

import atexit
import io
import math
import os
import sys
import time
from pathlib import Path

from tqdm import tqdm

LINE_EVERY = 0.1           # off a terminal: one line per 10% of a loop (and its last step)


def is_terminal(stream=None):
    stream = sys.stderr if stream is None else stream
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class LineProgress:
    """tqdm's small API (iteration, update, set_postfix, close, context manager) as lines that stay."""

    def __init__(self, iterable=None, total=None, desc="", initial=0, unit="it", every=LINE_EVERY, file=None):
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable) + initial
        self.total, self.desc, self.unit = total, desc, unit
        self.n, self.postfix, self.file = initial, "", file
        self.step = max(1, math.ceil(total * every)) if total else None
        self.began = time.perf_counter()
        self.next_line = (initial // self.step + 1) * self.step if self.step else None
        self.closed = False

    def __iter__(self):
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:                 # also after a break or an error: the last line says how far it got
            self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def set_postfix(self, **values):
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def _line(self):
        seconds = time.perf_counter() - self.began
        share = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        of = f"/{self.total}" if self.total else ""
        extra = f", {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {self.n}{of} {self.unit}{share} in {seconds:.1f} s{extra}",
              file=self.file or sys.stderr, flush=True)

    def update(self, n=1):
        self.n += n
        if self.next_line is not None and self.n >= self.next_line and self.n < (self.total or 0):
            self._line()
            self.next_line = (self.n // self.step + 1) * self.step

    def close(self):
        if not self.closed:
            self.closed = True
            self._line()


class _Silent:
    """A disabled bar: accepts the calls, prints nothing."""

    def __init__(self, iterable=None):
        self.iterable = iterable

    def __iter__(self):
        return iter(self.iterable)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def update(self, n=1):
        return None

    def set_postfix(self, **values):
        return None

    def close(self):
        return None


def progress(iterable=None, *, total=None, desc="", initial=0, unit="it", leave=True, disable=False):
    """A tqdm bar on a terminal, a LineProgress elsewhere, nothing when `disable`."""
    if disable:
        return _Silent(iterable)
    if is_terminal():
        return tqdm(iterable, total=total, desc=desc, initial=initial, unit=unit, leave=leave)
    return LineProgress(iterable, total=total, desc=desc, initial=initial, unit=unit)


def note(message):
    """One line that stays: above a running tqdm bar on a terminal, a plain line elsewhere."""
    if is_terminal():
        tqdm.write(message, file=sys.stderr)
    else:
        print(message, file=sys.stderr, flush=True)


class _Tee(io.TextIOBase):
    """A text stream that also appends complete lines to a log (carriage-return redraws collapse
    to their last state; a line cleared by a bar that removes itself is dropped)."""

    def __init__(self, stream, log):
        super().__init__()
        self.stream, self.log, self.line = stream, log, ""

    def write(self, text):
        self.stream.write(text)
        for char_block in _split_keep(text.replace("\r\n", "\n")):
            if char_block == "\n":
                if self.line.strip():
                    self.log.write(self.line.rstrip() + "\n")
                    self.log.flush()
                self.line = ""
            elif char_block == "\r":
                self.line = ""
            else:
                self.line += char_block
        return len(text)

    def flush(self):
        self.stream.flush()

    def writable(self):
        return True

    def finish(self):
        """Write a last line that never got its newline (stage_log closes the log)."""
        if self.line.strip() and not self.log.closed:
            self.log.write(self.line.rstrip() + "\n")
            self.log.flush()
        self.line = ""

    def isatty(self):
        return is_terminal(self.stream)

    def fileno(self):
        return self.stream.fileno()

    @property
    def encoding(self):
        return getattr(self.stream, "encoding", "utf-8")


def _split_keep(text):
    """`text` cut before and after every \\n and \\r, the separators kept as their own pieces."""
    piece = ""
    for char in text:
        if char in "\n\r":
            if piece:
                yield piece
                piece = ""
            yield char
        else:
            piece += char
    if piece:
        yield piece


def stage_log(stage, logs_dir="logs", append=False):
    """From now on, this process's stdout and stderr also go to logs_dir/<stage>.log.

    The log is started empty unless `append` (the worker processes of a data-parallel run, which
    add to what their launcher wrote); it is written in append mode either way, so a launcher and
    its workers never overwrite each other's lines. Calling it again moves the copy to the new log.
    """
    Path(logs_dir).mkdir(parents=True, exist_ok=True)
    path = os.path.join(logs_dir, f"{stage}.log")
    if not append:
        open(path, "w", encoding="utf-8").close()
    log = open(path, "a", encoding="utf-8")
    tees = [getattr(sys, name) for name in ("stdout", "stderr") if isinstance(getattr(sys, name), _Tee)]
    if tees:                                # again: finish the old log, then copy to the new one
        _finish(tees)
        for tee in tees:
            tee.log = log
    else:
        for name in ("stdout", "stderr"):
            setattr(sys, name, _Tee(getattr(sys, name), log))
        atexit.register(_finish, [sys.stdout, sys.stderr])
    return log


def _finish(tees):
    """Pending unfinished lines into the log, then close it (once, though both streams share it)."""
    for tee in tees:
        tee.finish()
    for tee in tees:
        if not tee.log.closed:
            tee.log.close()
