"""`onpoint stream`: one video's features in, one JSON line per proposal out, as soon as emitted.

Features come from a .npy file (n_steps x feature_dim; rate = n_steps / --duration) or from stdin,
so a live extractor can pipe into it: text lines (one step per line, values separated by
whitespace or commas) or, with --stdin-format npy-rows, raw little-endian float32 rows of
feature_dim values. On stdin the number of steps is not known upfront, so the rate is --step-rate
or the checkpoint's steps_per_second. A file and the same rows on stdin (at the same rate) give
identical output: both go through the same per-step loop.

Each line is flushed when written. Bad input (wrong width, a NaN/inf step, no steps, a truncated
stdin row or line, features so large that the network's output is NaN) stops the stream with a
one-line error naming the step; the lines already written stay written. A bad --device or a
checkpoint that cannot work (NaN weights, a config that does not fit its weights) is refused
before the first step.

Threads: one stream at batch 1 is a few small matrix products per step; torch's default of one
intra-op thread per core gains nothing there, and on a busy machine its spin-waiting threads
made 300 steps take minutes instead of seconds. --threads defaults to 1 (see the report of
issue 12 for the measurement).
"""

from __future__ import annotations

import json
import re
import sys

import click
import numpy as np

from ..config import PRECISIONS as PRECISION_CHOICES
from ..errors import OnPointError, friendly_errors
from ..progress import is_terminal

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


def _device(name):
    """The torch device to run on, checked: a bad name or an absent CUDA is one line, not a traceback."""
    import torch

    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise OnPointError(f"--device {name!r}: not a device name (cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise OnPointError(f"--device {name}: CUDA is not available here (no GPU, or torch built without CUDA); "
                               f"use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise OnPointError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif device.type != "cpu":
        raise OnPointError(f"--device {name}: only cpu and cuda devices are supported")
    return device


def _first_line(exc):
    """`Type: first line of the message`: torch's messages run over many lines; ours are one."""
    text = str(exc).strip().splitlines()
    return f"{exc.__class__.__name__}: {text[0]}" if text else exc.__class__.__name__


def _checked_student(model_path, device):
    """(model, meta) of a checkpoint that can stream: finite weights, and one window through the
    network works and gives finite numbers. A crafted or damaged file fails here, in one line,
    instead of as a traceback mid-stream or as silently empty output (NaN scores pass no threshold)."""
    import torch

    from ..student.checkpoint import load_student

    try:
        model, meta = load_student(model_path, device)
        config = meta["config"]
        window, feature_dim = int(config["window"]), int(config["feature_dim"])
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise OnPointError(f"{model_path}: malformed student checkpoint ({_first_line(exc)})") from None
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise OnPointError(f"{model_path}: weight {name} holds NaN or inf; the checkpoint is damaged")
    try:
        with torch.inference_mode():
            outputs = model(torch.zeros(1, window, feature_dim, device=device), heads="inference")
    except (RuntimeError, KeyError, TypeError, ValueError, IndexError) as exc:
        raise OnPointError(f"{model_path}: the network fails on one window ({_first_line(exc)})") from None
    if not all(bool(torch.isfinite(t).all()) for t in outputs.values() if torch.is_tensor(t)):
        raise OnPointError(f"{model_path}: the network's output on an all-zero window is NaN or inf")
    return model, meta


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
@click.option("--params", "params_path", default="params.yaml", show_default=True, type=click.Path(dir_okay=False),
              help="Where the defaults of the four options below come from (its `online` section, as the "
                   "online_eval stage uses them); not read when all four are given.")
@click.option("--score-threshold", type=float, default=None, help="Default: online.score_threshold of --params.")
@click.option("--nms-iou", type=float, default=None, help="Online NMS tIoU threshold. Default: online.nms_iou.")
@click.option("--tiou-floor", type=float, default=None,
              help="Seconds: tIoU denominators of the online NMS are at least this.")
@click.option("--precision", type=click.Choice(PRECISION_CHOICES), default=None,
              help="fp32 (exact), bf16, int8 (CPU) or fp16 (CUDA). Default: online.precision.")
@click.option("--device", default=None, help="torch device (default: cuda if available, else cpu).")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="CPU threads for torch. One stream at batch 1 gains nothing from more, and on a busy machine "
                   "extra threads make it many times slower.")
@friendly_errors
def stream_command(model_path, features_path, duration, step_rate, stdin_format, params_path, score_threshold,
                   nms_iou, tiou_floor, precision, device, threads):
    """Stream one video's features through the student; print one JSON line per emitted proposal.

    Each line holds label, start, end, score and gen_time (seconds; gen_time is when the proposal
    became final, and end <= gen_time always).
    """
    if features_path == "-" and is_terminal(sys.stdin):
        # nothing is piped in: reading the terminal would wait silently for typed feature rows
        click.echo("onpoint stream: no features: give --features FILE.npy, or pipe feature rows into "
                   "stdin (see --help)", err=True)
        raise SystemExit(2)
    import torch

    settings = _online_settings(params_path, score_threshold=score_threshold, nms_iou=nms_iou,
                                tiou_floor_seconds=tiou_floor, precision=precision)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        _stream(model_path, features_path, duration, step_rate, stdin_format, settings, device)
    finally:
        torch.set_num_threads(previous)     # in-process callers (tests) keep their own setting


def _online_settings(params_path, **given):
    """The engine's online settings (score_threshold, nms_iou, tiou_floor_seconds, precision): each
    given option, else the `online` section of params.yaml (validated like the pipeline's; the one
    place their values live). Returns them as StreamingEngine keyword arguments."""
    if all(value is not None for value in given.values()):
        return dict(given)
    from ..config import load_stage

    online = load_stage("online_eval", params_path).online
    return {key: getattr(online, key) if value is None else value for key, value in given.items()}


def _stream(model_path, features_path, duration, step_rate, stdin_format, settings, device):
    """The body of `onpoint stream` (options as there)."""
    from .engine import NonFiniteOutput, StreamingEngine

    if step_rate is not None and not step_rate > 0:
        raise OnPointError(f"--step-rate must be > 0, got {step_rate}")
    if duration is not None and not duration > 0:
        raise OnPointError(f"--duration must be > 0 seconds, got {duration}")
    device = _device(device)
    model, meta = _checked_student(model_path, device)
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
    try:
        engine = StreamingEngine(model, meta, device=device, **settings).start([rate])
    except (KeyError, TypeError, ValueError) as exc:
        raise OnPointError(f"{model_path}: malformed student checkpoint ({_first_line(exc)})") from None
    except OnPointError as exc:
        if str(exc).startswith("checkpoint meta"):
            raise OnPointError(f"{model_path}: {exc}") from None
        raise
    steps, largest = 0, 0.0
    for row in rows:
        if not np.isfinite(row).all():
            raise OnPointError(f"{source}: step {steps}: feature value is NaN or inf")
        largest = max(largest, float(np.abs(row).max()))
        try:
            proposals = engine.push(row[None, :])[0]
        except NonFiniteOutput:
            raise OnPointError(f"{source}: step {steps}: the network's output is NaN or inf (largest |feature| so far "
                               f"{largest:.3g}); are these features scaled like the ones it was trained on?") from None
        for proposal in proposals:
            _emit(proposal)
        steps += 1
    if steps == 0:
        raise OnPointError(f"{source}: no feature steps (empty input)")


if __name__ == "__main__":   # `python -m onpoint_core.online.stream_cli` until it is registered in cli.py
    stream_command()
