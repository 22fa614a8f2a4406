"""Stage `pseudo_segments`: the teacher's pseudo segments of the point-labelled videos, and their quality.

Reads `<teacher>.proposals` and `<teacher>.pseudo` only: changing them never retrains the teacher.
"""

import click

from onpoint_core.data.dataset import load_dataset
from onpoint_core.data.tables import read_cached_cas, read_points
from onpoint_core.errors import friendly_errors
from onpoint_core.io import atomic_dir, write_json, write_parquet
from onpoint_core.pipeline import start, write_run_log
from onpoint_core.teachers.plots import timeline_png
from onpoint_core.teachers.runner import (POINT_SUBSETS, check_point_coverage, load_checkpoint, pseudo_quality,
                                         pseudo_segments)

QUALITY_METRICS = ("precision", "recall", "f1", "mean_tiou")


def longest_fraction_of_video(dataset, pseudo):
    """The largest pseudo-segment length over its video's duration (a segment covering most of a
    video makes the largest anchor positive nearly everywhere); None without pseudo segments."""
    if not len(pseudo):
        return None
    durations = pseudo.video_id.map(lambda v: float(dataset.video(v)["duration"]))
    return float(((pseudo.end - pseudo.start) / durations).max())


@click.command()
@click.option("--params", "params_path", default="params.yaml", show_default=True)
@click.option("--dataset", "dataset_dir", default="data/dataset", show_default=True)
@click.option("--points", "points_path", default="data/points/points.parquet", show_default=True)
@click.option("--model", default="models/teacher.pt", show_default=True)
@click.option("--cache", "cache_dir", default="data/teacher", show_default=True)
@click.option("--out", default="data/pseudo/pseudo_segments.parquet", show_default=True)
@click.option("--metrics", default="metrics/pseudo_segments.json", show_default=True)
@click.option("--timelines", default="plots/teacher_timelines", show_default=True)
@click.option("--num-timelines", default=4, show_default=True, help="How many training videos to draw.")
@friendly_errors
def main(params_path, dataset_dir, points_path, model, cache_dir, out, metrics, timelines, num_timelines):
    cfg = start("pseudo_segments", params_path)
    dataset = load_dataset(dataset_dir, check_files=False)
    points = read_points(points_path)
    kind, teacher = load_checkpoint(model, dataset)
    cas = read_cached_cas(cache_dir, dataset.video_ids(*POINT_SUBSETS))
    pseudo = pseudo_segments(teacher, dataset, cas, points, cfg.proposals, cfg.pseudo)   # CAS and points, never GT
    coverage = check_point_coverage(pseudo, points, cfg.pseudo.min_point_coverage, f"{kind}.pseudo.min_point_coverage")
    write_parquet(out, pseudo)
    quality = pseudo_quality(dataset, pseudo, points)     # metrics: GT read here only
    write_json(metrics, {**{k: quality[k] for k in QUALITY_METRICS},
                         "longest_fraction_of_video": longest_fraction_of_video(dataset, pseudo)})
    write_run_log("pseudo_segments", {"teacher": kind, "num_pseudo_segments": int(len(pseudo)),
                                      "point_coverage": round(coverage, 4),
                                      **{k: v for k, v in quality.items() if k not in QUALITY_METRICS}})
    with atomic_dir(timelines) as tmp:
        for video_id in dataset.video_ids("train")[:num_timelines]:
            timeline_png(tmp / f"{video_id}.png", video_id, dataset.video(video_id)["duration"], dataset.classes,
                         dataset.segments_of(video_id), points[points.video_id == video_id], cas[video_id],
                         pseudo[pseudo.video_id == video_id])
    click.echo(f"pseudo segments: {len(pseudo)}; precision {quality['precision']:.1f} recall {quality['recall']:.1f} "
               f"mean tIoU {quality['mean_tiou']:.3f}; {quality['points_without_pseudo_segment']} points without one -> {out}")


if __name__ == "__main__":
    main()
