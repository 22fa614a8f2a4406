"""Pseudo-segment quality of the workspace run on the val videos: how a teacher budget is chosen.

    dvc exp run -S dataset=egtea_synth -S teacher=tsaspc -S tsaspc.train.batch_size=1 pseudo_segments
    python scripts/pseudo_quality.py
    python scripts/pseudo_quality.py --segments runs --segments point_anchored   # TSASPC: both ways

Prints precision, recall and mean tIoU at tIoU 0.5 of data/pseudo/pseudo_segments.parquet against
the val videos' GT (val GT is for selection), and the `--also train` split when asked (a diagnostic
of what the students will learn from; never used to choose anything). `--segments` recomputes the
TSASPC pseudo segments from the cached CAS (data/teacher) with that `tsaspc.pseudo.segments` value
instead of reading the table (nothing is written), so the two ways are compared on one teacher.
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


def quality(dataset, found, subsets, tiou):
    out = {}
    for subset in subsets:
        videos = dataset.video_ids(subset)
        q = segment_quality(dataset.segments[dataset.segments.video_id.isin(videos)],
                            found[found.video_id.isin(videos)], tiou)
        out[subset] = {"precision": round(q["precision"], 1), "recall": round(q["recall"], 1),
                       "mean_tiou": round(q["mean_tiou"], 3)}
    return out


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
@friendly_errors
def main(dataset_dir, pseudo, also, tiou, modes, points_path, teacher_path, cache_dir):
    dataset = load_dataset(dataset_dir, check_files=False)
    subsets = ("val", *also)
    if not modes:
        click.echo(json.dumps(quality(dataset, pd.read_parquet(pseudo), subsets, tiou)))
        return
    out = {mode: quality(dataset, recomputed(dataset, points_path, teacher_path, cache_dir, mode), subsets, tiou)
           for mode in modes}
    click.echo(json.dumps(out))


if __name__ == "__main__":
    main()
