"""Stage `points`: the point labels of the training videos (LACP or Gaussian), with label statistics."""

import click

from onpoint_core.data.dataset import load_dataset
from onpoint_core.errors import friendly_errors
from onpoint_core.io import write_parquet
from onpoint_core.pipeline import start, write_run_log
from onpoint_core.points.labels import point_metrics, shifted_points, training_points


@click.command()
@click.option("--params", "params_path", default="params.yaml", show_default=True)
@click.option("--dataset", "dataset_dir", default="data/dataset", show_default=True)
@click.option("--out", default="data/points/points.parquet", show_default=True)
@friendly_errors
def main(params_path, dataset_dir, out):
    points_cfg = start("points", params_path).points
    dataset = load_dataset(dataset_dir, check_files=False)
    points = training_points(dataset, points_cfg.source, points_cfg.seed, points_cfg.sigma_fraction)
    durations = dict(zip(dataset.videos.video_id, dataset.videos.duration))
    points = shifted_points(points, durations, points_cfg.noise_seconds, points_cfg.noise_seed)
    write_parquet(out, points)
    stats = {"source": "dataset (shipped points)" if points_cfg.source == "dataset" else "gaussian",
             "noise_seconds": points_cfg.noise_seconds, **point_metrics(points, dataset)}
    write_run_log("points", stats)
    click.echo(f"points: {stats['num_points']} on {stats['num_videos']} training videos "
               f"(relative position {stats['relative_position_mean']:.3f} +- {stats['relative_position_std']:.3f}) -> {out}")


if __name__ == "__main__":
    main()
