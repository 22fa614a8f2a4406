"""`onpoint stream`: one video's features in, one JSON line per proposal out, as soon as emitted.

Features come from a .npy file (n_steps x feature_dim; rate = n_steps / --duration) or from stdin,
so a live extractor can pipe into it: text lines (one step per line, values separated by
whitespace or commas) or, with --stdin-format npy-rows, raw little-endian float32 rows of
feature_dim values. On stdin the number of steps is not known upfront, so the rate is --step-rate
or the checkpoint's steps_per_second. A file and the same rows on stdin (at the same rate) give
identical output: both go through the same per-step loop.

Each line is flushed when written. Bad input (wrong width, a NaN/inf step, no steps, a truncated
stdin row or line) stops the stream with a one-line error naming the step; the lines already
written stay written.
"""

from __future__ import annotations

import json
import re
import sys

import click
import numpy as np

from ..errors import OnPointError, friendly_errors

_SEPARATORS = re.compile(r"[,\s]+")


def _file_rows(path, feature_dim):
    """(n_steps, iterator of float32 rows) of a .npy file, memory-mapped."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise OnPointError(f"{path}: features file not found") from None
    except (ValueError, OSError, EOFError) as exc:
        raise OnPointError(f"{path}: not a readable .npy features file ({exc.__class__.__name__})") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "fiu":
        raise OnPointError(f"{path}: features must be a real-valued numeric array")
    if array.ndim != 2:
        raise OnPointError(f"{path}: features must be n_steps x feature_dim, got shape {array.shape}")
    if array.shape[0] == 0:
        raise OnPointError(f"{path}: no feature steps (empty file)")
    if array.shape[1] != feature_dim:
        raise OnPointError(f"{path}: feature width {array.shape[1]}, the checkpoint expects {feature_dim}")
    return len(array), (np.array(row, dtype=np.float32) for row in array)   # a writable copy per step


def _text_rows(stream, feature_dim, source):
    """float32 rows from text lines; blank lines are skipped."""
    step = 0
    for raw in stream:
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise OnPointError(f"{source}: step {step}: not a text line") from None
        if not line:
            continue
        tokens = [t for t in _SEPARATORS.split(line) if t]
        if len(tokens) != feature_dim:
            raise OnPointError(f"{source}: step {step}: {len(tokens)} values, the checkpoint expects {feature_dim} "
                               f"(truncated or malformed line)")
        try:
            values = np.array([float(t) for t in tokens], dtype=np.float64)
        except ValueError:
            raise OnPointError(f"{source}: step {step}: a value is not a number") from None
        yield values.astype(np.float32)
        step += 1


def _binary_rows(stream, feature_dim, source):
    """float32 rows from raw little-endian float32 bytes, feature_dim values a row."""
    size = 4 * feature_dim
    step = 0
    while True:
        chunk = bytearray()
        while len(chunk) < size:
            more = stream.read(size - len(chunk))
            if not more:
                break
            chunk += more
        if not chunk:
            return
        if len(chunk) < size:
            raise OnPointError(f"{source}: step {step}: truncated row, {len(chunk)} of {size} bytes "
                               f"({feature_dim} float32 values)")
        yield np.frombuffer(bytes(chunk), dtype="<f4").astype(np.float32)
        step += 1


def _emit(proposal):
    click.echo(json.dumps({key: proposal[key] for key in ("label", "start", "end", "score", "gen_time")}))
    sys.stdout.flush()


@click.command("stream")
@click.option("--model", "model_path", required=True, type=click.Path(dir_okay=False),
              help="Student checkpoint (models/student.pt).")
@click.option("--features", "features_path", default="-", show_default=True,
              help="n_steps x feature_dim .npy file, or '-' for stdin.")
@click.option("--duration", type=float, default=None,
              help="Video duration in seconds (with a file: rate = n_steps / duration).")
@click.option("--step-rate", type=float, default=None,
              help="Feature steps per second (stdin, or a file without --duration); default: the checkpoint's.")
@click.option("--stdin-format", type=click.Choice(["text", "npy-rows"]), default="text", show_default=True,
              help="text: one step per line, values separated by whitespace or commas; "
                   "npy-rows: raw little-endian float32 rows.")
@click.option("--score-threshold", type=float, default=0.1, show_default=True)
@click.option("--nms-iou", type=float, default=0.3, show_default=True, help="Online NMS tIoU threshold.")
@click.option("--tiou-floor", type=float, default=1.0, show_default=True,
              help="Seconds: tIoU denominators of the online NMS are at least this.")
@click.option("--device", default=None, help="torch device (default: cuda if available, else cpu).")
@friendly_errors
def stream_command(model_path, features_path, duration, step_rate, stdin_format, score_threshold, nms_iou,
                   tiou_floor, device):
    """Stream one video's features through the student; print one JSON line per emitted proposal.

    Each line holds label, start, end, score and gen_time (seconds; gen_time is when the proposal
    became final, and end <= gen_time always).
    """
    import torch

    from ..student.checkpoint import load_student
    from .engine import StreamingEngine

    if step_rate is not None and not step_rate > 0:
        raise OnPointError(f"--step-rate must be > 0, got {step_rate}")
    if duration is not None and not duration > 0:
        raise OnPointError(f"--duration must be > 0 seconds, got {duration}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, meta = load_student(model_path, device)
    feature_dim = int(meta["config"]["feature_dim"])
    default_rate = step_rate or float(meta.get("steps_per_second") or 0)
    if features_path == "-":
        if duration is not None:
            raise OnPointError("--duration needs --features FILE (the number of steps on stdin is not known "
                               "upfront); give --step-rate for stdin")
        source = "stdin"
        stdin = sys.stdin.buffer
        rows = (_text_rows if stdin_format == "text" else _binary_rows)(stdin, feature_dim, source)
        rate = default_rate
    else:
        source = features_path
        n_steps, rows = _file_rows(features_path, feature_dim)
        rate = n_steps / duration if duration is not None else default_rate
    if not rate > 0:
        raise OnPointError(f"{model_path}: no steps_per_second in the checkpoint; give --step-rate or --duration")
    engine = StreamingEngine(model, meta, score_threshold=score_threshold, nms_iou=nms_iou,
                             tiou_floor_seconds=tiou_floor, device=device).start([rate])
    steps = 0
    for row in rows:
        if not np.isfinite(row).all():
            raise OnPointError(f"{source}: step {steps}: feature value is NaN or inf")
        for proposal in engine.push(row[None, :])[0]:
            _emit(proposal)
        steps += 1
    if steps == 0:
        raise OnPointError(f"{source}: no feature steps (empty input)")


if __name__ == "__main__":   # `python -m onpoint_core.online.stream_cli` until it is registered in cli.py
    stream_command()
