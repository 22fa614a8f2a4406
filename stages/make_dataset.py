"""Stage `dataset`: generate the synthetic benchmark, or validate and place an imported dataset."""

import time

import click

from onpoint_core.data.dataset import copy_dataset, dataset_summary, load_dataset
from onpoint_core.data.synthetic import generate_synthetic
from onpoint_core.errors import friendly_errors
from onpoint_core.pipeline import start, write_run_log


@click.command()
@click.option("--params", "params_path", default="params.yaml", show_default=True)
@click.option("--out", default="data/dataset", show_default=True)
@friendly_errors
def main(params_path, out):
    cfg = start("dataset", params_path)
    began = time.perf_counter()
    if cfg.source == "synthetic":
        generate_synthetic(cfg.generator.as_dict(), out)
    else:
        copy_dataset(cfg.source, out)
    seconds = time.perf_counter() - began
    summary = {"dataset": cfg.dataset_name, **dataset_summary(load_dataset(out)), "seconds": round(seconds, 2)}
    write_run_log("dataset", summary)
    click.echo(f"dataset {cfg.dataset_name}: {summary['videos']} videos, {summary['instances']} instances, "
               f"{summary['size_mb']} MB in {seconds:.1f} s -> {out}")


if __name__ == "__main__":
    main()
