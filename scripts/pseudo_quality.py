"""Pseudo-segment quality of the workspace run on the val videos: how a teacher budget is chosen.

    dvc exp run -S dataset=egtea_synth -S teacher=tsaspc -S tsaspc.train.batch_size=1 pseudo_segments
    python scripts/pseudo_quality.py

Prints precision, recall and mean tIoU at tIoU 0.5 of data/pseudo/pseudo_segments.parquet against
the val videos' GT (val GT is for selection), and the `--also train` split when asked (a diagnostic
of what the students will learn from; never used to choose anything).
"""

from __future__ import annotations

import json

import click
import pandas as pd

from onpoint_core.data.dataset import load_dataset
from onpoint_core.errors import friendly_errors
from onpoint_core.evaluation.detection import segment_quality


@click.command()
@click.option("--dataset", "dataset_dir", default="data/dataset", show_default=True)
@click.option("--pseudo", default="data/pseudo/pseudo_segments.parquet", show_default=True)
@click.option("--also", "also", multiple=True, type=click.Choice(["train"]), help="Report this split too.")
@click.option("--tiou", default=0.5, show_default=True)
@friendly_errors
def main(dataset_dir, pseudo, also, tiou):
    dataset = load_dataset(dataset_dir, check_files=False)
    found = pd.read_parquet(pseudo)
    out = {}
    for subset in ("val", *also):
        videos = dataset.video_ids(subset)
        quality = segment_quality(dataset.segments[dataset.segments.video_id.isin(videos)],
                                  found[found.video_id.isin(videos)], tiou)
        out[subset] = {"precision": round(quality["precision"], 1), "recall": round(quality["recall"], 1),
                       "mean_tiou": round(quality["mean_tiou"], 3)}
    click.echo(json.dumps(out))


if __name__ == "__main__":
    main()
