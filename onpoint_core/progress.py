"""Progress that reads well on a terminal and in a log file, and the stage log under logs/.

On a terminal, long loops get tqdm bars. Anywhere else (a CI log, `dvc repro > run.log`, a DVC
queue worker) a bar becomes hundreds of carriage-return redraws and, when it clears itself, leaves
nothing behind; there each loop prints one line per `LINE_EVERY` of its length instead, and the
lines stay. `note()` prints a line that stays in both cases (the per-epoch summaries).

`stage_log(stage)` copies everything a stage prints (stdout and stderr) into logs/<stage>.log,
keeping the final state of each progress line only, so the log of a run is readable afterwards
even when it ran on a terminal.
"""

from __future__ import annotations

import io
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
        self.step = max(1, int((total or 0) * every)) if total else None
        self.began = time.perf_counter()
        self.next_line = (initial // self.step + 1) * self.step if self.step else None
        self.closed = False

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)
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


def stage_log(stage, logs_dir="logs"):
    """From now on, this process's stdout and stderr also go to logs_dir/<stage>.log (replaced)."""
    Path(logs_dir).mkdir(parents=True, exist_ok=True)
    log = open(os.path.join(logs_dir, f"{stage}.log"), "w", encoding="utf-8")    # closed at exit
    if not isinstance(sys.stdout, _Tee):
        sys.stdout = _Tee(sys.stdout, log)
    if not isinstance(sys.stderr, _Tee):
        sys.stderr = _Tee(sys.stderr, log)
    return log
