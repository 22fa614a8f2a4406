"""Pseudo-segment quality of the workspace run on the val videos: how a teacher budget is chosen.

    dvc exp run -S dataset=egtea_synth -S teacher=tsaspc -S tsaspc.train.batch_size=1 pseudo_segments
    python scripts/pseudo_quality.py
    python scripts/pseudo_quality.py --segments runs --segments point_anchored   # TSASPC: both ways

Prints precision, recall and mean tIoU at tIoU 0.5 of data/pseudo/pseudo_segments.parquet against
the val videos' GT (val GT is for selection), and the `--also train` split when asked (a diagnostic
of what the students will learn from; never used to choose anything). `--segments` recomputes the
TSASPC pseudo segments from the cached CAS (data/teacher) with that `tsaspc.pseudo.segments` value
instead of reading the table (nothing is written), so the two ways are compared on one teacher.
`--by-duration` adds the recall per ground-truth duration bin (`--bins`, seconds): where a timing
with shorter actions loses its recall, and how much of the loss is the mix of durations.
"""

from __future__ import annotations

import json

import click
import pandas as pd

from onpoint_core.config import TSASPCPseudo
from onpoint_core.data.dataset import load_dataset
from onpoint_core.data.tables import read_cached, read_points
from onpoint_core.errors import OnPointError, friendly_errors
from onpoint_core.evaluation.detection import segment_quality
from onpoint_core.teachers.runner import POINT_SUBSETS, load_checkpoint, pseudo_segments


def recomputed(dataset, points_path, teacher_path, cache_dir, mode):
    """The TSASPC pseudo segments of the cached CAS with `segments: mode` (a table in seconds)."""
    kind, teacher = load_checkpoint(teacher_path, dataset)
    if kind != "tsaspc":
        raise OnPointError(f"{teacher_path}: a {kind} teacher; --segments is a tsaspc setting")
    points = read_points(points_path)
    cas = read_cached(cache_dir, dataset.video_ids(*POINT_SUBSETS), "cas")
    return pseudo_segments(teacher, dataset, cas, points, None, TSASPCPseudo(segments=mode, min_point_coverage=0.0))


def recall_by_duration(gt, found, bins, tiou):
    """Recall at `tiou` of the ground-truth segments in each duration bin [lo, hi) seconds, with the
    bin's share of the segments. Each bin's segments are matched on their own (one-to-one within the
    bin), so a pseudo segment can count in one bin only once, as in the overall recall."""
    durations = gt["end"] - gt["start"]
    out = {}
    for lo, hi in zip(bins[:-1], bins[1:]):
        part = gt[(durations >= lo) & (durations < hi)]
        name = f"{lo:g}-{hi:g} s"
        if not len(part):
            out[name] = {"share": 0.0, "recall": None}
            continue
        recall = segment_quality(part, found, tiou)["recall"]
        out[name] = {"share": round(100 * len(part) / len(gt), 1), "recall": round(recall, 1)}
    return out


def quality(dataset, found, subsets, tiou, bins=None):
    out = {}
    for subset in subsets:
        videos = dataset.video_ids(subset)
        gt = dataset.segments[dataset.segments.video_id.isin(videos)]
        mine = found[found.video_id.isin(videos)]
        q = segment_quality(gt, mine, tiou)
        out[subset] = {"precision": round(q["precision"], 1), "recall": round(q["recall"], 1),
                       "mean_tiou": round(q["mean_tiou"], 3)}
        if bins:
            out[subset]["recall_by_duration"] = recall_by_duration(gt, mine, bins, tiou)
    return out


def parse_bins(text):
    """'0,1.3,2.5,5,inf' -> [0.0, 1.3, 2.5, 5.0, inf]; a one-line error unless they increase."""
    try:
        edges = [float(x) for x in text.split(",")]
    except ValueError:
        raise OnPointError(f"--bins {text!r}: comma-separated numbers in seconds, e.g. 0,1.3,2.5,5,inf") from None
    if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise OnPointError(f"--bins {text!r}: at least two edges, each larger than the one before")
    return edges


@click.command()
@click.option("--dataset", "dataset_dir", default="data/dataset", show_default=True)
@click.option("--pseudo", default="data/pseudo/pseudo_segments.parquet", show_default=True)
@click.option("--also", "also", multiple=True, type=click.Choice(["train"]), help="Report this split too.")
@click.option("--tiou", default=0.5, show_default=True)
@click.option("--segments", "modes", multiple=True, type=click.Choice(["point_anchored", "runs"]),
              help="Recompute TSASPC pseudo segments from the cached CAS this way (repeatable).")
@click.option("--points", "points_path", default="data/points/points.parquet", show_default=True)
@click.option("--teacher", "teacher_path", default="models/teacher.pt", show_default=True)
@click.option("--cache", "cache_dir", default="data/teacher", show_default=True)
@click.option("--by-duration", is_flag=True, help="Also the recall per ground-truth duration bin.")
@click.option("--bins", default="0,1.3,2.5,5,inf", show_default=True,
              help="Duration bin edges in seconds, comma-separated, increasing (with --by-duration).")
@friendly_errors
def main(dataset_dir, pseudo, also, tiou, modes, points_path, teacher_path, cache_dir, by_duration, bins):
    dataset = load_dataset(dataset_dir, check_files=False)
    subsets = ("val", *also)
    edges = parse_bins(bins) if by_duration else None
    if not modes:
        click.echo(json.dumps(quality(dataset, pd.read_parquet(pseudo), subsets, tiou, edges)))
        return
    out = {mode: quality(dataset, recomputed(dataset, points_path, teacher_path, cache_dir, mode), subsets, tiou, edges)
           for mode in modes}
    click.echo(json.dumps(out))


if __name__ == "__main__":
    main()
