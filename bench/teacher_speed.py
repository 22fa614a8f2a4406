"""Benchmark: wall time of each teacher's training and caching on its default synthetic profile.

    python bench/teacher_speed.py [--dataset synthetic] [--dataset synthetic_dense] [--threads N]

Prints one line per dataset: fit seconds, cache seconds (one batched pass over every video),
steps per second of caching, and the process's peak memory. Speed goals are checked here,
not in timed tests (shared machines make timed tests flaky).
"""

import resource
import tempfile
import time
from pathlib import Path

import click
import pandas as pd
import torch

from onpoint_core.config import load_params
from onpoint_core.data.dataset import load_dataset
from onpoint_core.data.synthetic import generate_synthetic
from onpoint_core.points.labels import training_points
from onpoint_core.teachers.runner import TRAIN_SUBSETS, build_teacher, run_teacher, teacher_videos


TEACHER_OF = {"synthetic": "hrpro", "synthetic_dense": "tsaspc"}   # each benchmark with the paper's kind of teacher


@click.command()
@click.option("--dataset", "datasets", multiple=True, default=list(TEACHER_OF),
              type=click.Choice(list(TEACHER_OF)), show_default=True)
@click.option("--params", "params_path", default="params.yaml", show_default=True)
@click.option("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
def main(datasets, params_path, threads):
    if threads:
        torch.set_num_threads(threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"device {'cuda' if torch.cuda.is_available() else 'cpu'}")
    for name in datasets:
        kind = TEACHER_OF[name]
        cfg = load_params(params_path, dataset=name, teacher=kind)
        with tempfile.TemporaryDirectory() as tmp:
            generate_synthetic(cfg.data.generator.as_dict(), Path(tmp) / "d", progress=False)
            dataset = load_dataset(Path(tmp) / "d")
            points = training_points(dataset, "gaussian", cfg.data.points.seed, cfg.data.points.sigma_fraction)
            videos = teacher_videos(dataset, points, TRAIN_SUBSETS)
            teacher = build_teacher(kind, dataset, cfg.teacher_train)
            began = time.perf_counter()
            teacher.fit(videos, progress=False)
            fit = time.perf_counter() - began
            began = time.perf_counter()
            run_teacher(teacher, dataset, cfg.teacher_detect.predict_batch, progress=False)
            cache = time.perf_counter() - began
            steps = int(pd.to_numeric(dataset.videos.n_steps).sum())
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{name:16s} {kind:7s} fit {fit:7.1f} s on {len(videos)} videos | cache {cache:5.1f} s "
              f"({steps / cache:,.0f} steps/s over {steps:,} steps) | peak RSS {peak:,.0f} MiB")


if __name__ == "__main__":
    main()
