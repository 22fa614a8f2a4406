"""`onpoint predict`: many videos through one student, streamed in batches, one table out.

The same engine and decode path as the `online_eval` stage (`engine.stream_videos`), so the
proposals of a video are the ones the stage scores. Inputs are checked the way `onpoint stream`
checks them (one line naming the file): a .npy file per video (the video id is the file's stem),
or folders of them. The rate of a video is n_steps / duration when `--durations` gives its
duration, else `--step-rate`, else the checkpoint's steps_per_second.

The output's suffix picks the format: .parquet / .csv / .jsonl (video_id, label, start, end,
score, gen_time; seconds) or .json (ActivityNet's {"results": ...} layout, every input video
listed, also those with no proposal).
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from ..config import PRECISIONS as PRECISION_CHOICES
from ..errors import OnPointError, friendly_errors
from .stream_cli import _checked_student, _device, _file_rows, _online_settings

OUTPUT_SUFFIXES = (".parquet", ".csv", ".jsonl", ".json")


def feature_files(paths):
    """{video id: .npy path} of the given files and folders (a folder: its *.npy, sorted)."""
    files = {}
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(path.glob("*.npy"))
            if not found:
                raise OnPointError(f"{path}: no .npy feature files in this folder")
        elif path.is_file():
            found = [path]
        else:
            raise OnPointError(f"{path}: no such file or folder")
        for file in found:
            if file.suffix != ".npy":
                raise OnPointError(f"{file}: not a .npy features file")
            if file.stem in files and files[file.stem] != file:
                raise OnPointError(f"{file}: video id {file.stem!r} also comes from {files[file.stem]}")
            files[file.stem] = file
    return files


def read_durations(path):
    """{video_id: seconds} from a table with video_id and duration (e.g. a dataset's videos.parquet)."""
    import pandas as pd

    path = Path(path)
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            table = pd.read_parquet(path, columns=["video_id", "duration"])
        elif path.suffix.lower() in (".csv", ".tsv"):
            table = pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",", dtype={"video_id": str},
                                usecols=["video_id", "duration"])
        else:
            raise OnPointError(f"{path}: durations must be .parquet, .csv or .tsv with video_id and duration")
    except OnPointError:
        raise
    except Exception as exc:    # parsers raise many types; the user needs the file and the reason
        raise OnPointError(f"{path}: not a table with video_id and duration ({exc.__class__.__name__})") from None
    durations = pd.to_numeric(table["duration"], errors="coerce").to_numpy(np.float64)
    bad = ~(np.isfinite(durations) & (durations > 0))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise OnPointError(f"{path}: video {table.video_id.iloc[row]}: duration must be a positive number of seconds")
    return dict(zip(table.video_id.astype(str), durations))


def load_features(files, feature_dim, durations, default_rate):
    """(features, durations) per video, checked like `onpoint stream` checks a file."""
    features, seconds = {}, {}
    for video, path in files.items():
        n_steps, _ = _file_rows(path, feature_dim)            # shape, dtype and width checks, one line each
        array = np.asarray(np.load(path, allow_pickle=False), dtype=np.float32)
        bad = np.flatnonzero(~np.isfinite(array).all(axis=1))
        if len(bad):
            raise OnPointError(f"{path}: step {bad[0]}: a feature value is NaN or inf")
        if video in durations:
            seconds[video] = float(durations[video])
        elif default_rate > 0:
            seconds[video] = n_steps / default_rate
        else:
            raise OnPointError(f"{path}: no duration for video {video!r} and no steps_per_second in the checkpoint; "
                               f"give --durations or --step-rate")
        features[video] = array
    return features, seconds


def write_proposals(path, proposals, videos):
    """The proposals table in the format of `path`'s suffix, written atomically."""
    from ..evaluation.activitynet import results_json
    from ..io import atomic_file, write_parquet

    suffix = Path(path).suffix.lower()
    if suffix == ".parquet":
        write_parquet(path, proposals)
        return
    with atomic_file(path) as handle:
        if suffix == ".csv":
            proposals.to_csv(handle, index=False)
        elif suffix == ".jsonl":
            for row in proposals.to_dict("records"):
                handle.write(json.dumps(row) + "\n")
        else:
            json.dump(results_json(proposals, videos=videos), handle, indent=1)
            handle.write("\n")


@click.command("predict")
@click.option("--model", "model_path", required=True, type=click.Path(dir_okay=False),
              help="Student checkpoint (models/student.pt).")
@click.option("--features", "features_paths", required=True, multiple=True,
              help="A .npy file (n_steps x feature_dim; video id = file stem) or a folder of them; repeatable.")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False),
              help="Output table: .parquet, .csv, .jsonl, or .json (ActivityNet results layout).")
@click.option("--durations", "durations_path", type=click.Path(exists=True, dir_okay=False),
              help="Table with video_id and duration in seconds (a dataset's videos.parquet): rate = n_steps / "
                   "duration.")
@click.option("--step-rate", type=float, default=None,
              help="Steps per second of videos without a duration; default: the checkpoint's.")
@click.option("--batch", type=click.IntRange(min=1), default=64, show_default=True,
              help="Videos streamed together in one batched forward pass (the same proposals; float "
                   "rounding of their times and scores may differ at 1e-7).")
@click.option("--params", "params_path", default="params.yaml", show_default=True, type=click.Path(dir_okay=False),
              help="Where the defaults of the four options below come from (its `online` section).")
@click.option("--score-threshold", type=float, default=None, help="Default: online.score_threshold of --params.")
@click.option("--nms-iou", type=float, default=None, help="Default: online.nms_iou of --params.")
@click.option("--tiou-floor", type=float, default=None, help="Default: online.tiou_floor_seconds of --params.")
@click.option("--precision", type=click.Choice(PRECISION_CHOICES), default=None,
              help="fp32 (exact), bf16, int8 (CPU) or fp16 (CUDA). Default: online.precision of --params.")
@click.option("--device", default=None, help="torch device (default: cuda if available, else cpu).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="A progress bar over all steps.")
@friendly_errors
def predict_command(model_path, features_paths, out_path, durations_path, step_rate, batch, params_path,
                    score_threshold, nms_iou, tiou_floor, precision, device, progress):
    """Stream every given video through the student (batched); write all emitted proposals."""
    from .engine import StreamingEngine, stream_videos

    if Path(out_path).suffix.lower() not in OUTPUT_SUFFIXES:
        raise OnPointError(f"{out_path}: unsupported output type (use {', '.join(OUTPUT_SUFFIXES)})")
    if step_rate is not None and not step_rate > 0:
        raise OnPointError(f"--step-rate must be > 0, got {step_rate}")
    settings = _online_settings(params_path, score_threshold=score_threshold, nms_iou=nms_iou,
                                tiou_floor_seconds=tiou_floor, precision=precision)
    files = feature_files(features_paths)
    device = _device(device)
    model, meta = _checked_student(model_path, device)
    durations = read_durations(durations_path) if durations_path else {}
    rate = step_rate or float(meta.get("steps_per_second") or 0)
    features, seconds = load_features(files, int(meta["config"]["feature_dim"]), durations, rate)
    engine = StreamingEngine(model, meta, device=device, **settings)
    proposals = stream_videos(engine, features, seconds, batch_size=batch, progress=progress)
    write_proposals(out_path, proposals, videos=list(files))
    click.echo(f"{len(proposals)} proposals from {len(files)} videos -> {out_path}", err=True)
