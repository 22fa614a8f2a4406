"""Stage `student_train`: distil the teacher into the online student (the run named by student.run).

With `student.processes > 1` the stage relaunches itself under torchrun (DDP: gloo on CPU, NCCL on
GPU); rank 0 writes the outputs.
"""

import os
import subprocess
import sys
from pathlib import Path

import click
import torch

from onpoint_core.config import load_stage
from onpoint_core.data.dataset import load_dataset
from onpoint_core.errors import friendly_errors
from onpoint_core.io import atomic_file, write_json
from onpoint_core.live import LiveCurves
from onpoint_core.pipeline import start, write_run_log, write_terms_csv
from onpoint_core.provenance import git_revision
from onpoint_core.runtime import pick_device
from onpoint_core.student import runner
from onpoint_core.student.training import TERMS

STUDENT_TERMS = {"loss": "total", "ins": "L_ins", "cass": "L_cass", "ant": "L_ant", "pnt": "L_pnt"}
LIVE_TERMS = {**STUDENT_TERMS, "val_avg": "val_avg_0.1_0.7", "lr": "lr"}     # live/student_train/plots/metrics/*.tsv

DIAGNOSTICS = ("anticipation_positive_rate", "calibration_gap")


def _write_csv(path, frame):
    with atomic_file(path) as handle:
        frame.to_csv(handle, index=False)


@click.command()
@click.option("--params", "params_path", default="params.yaml", show_default=True)
@click.option("--dataset", "dataset_dir", default="data/dataset", show_default=True)
@click.option("--points", "points_path", default="data/points/points.parquet", show_default=True)
@click.option("--pseudo", "pseudo_path", default="data/pseudo/pseudo_segments.parquet", show_default=True)
@click.option("--teacher-cache", default="data/teacher", show_default=True)
@click.option("--out", default="models/student.pt", show_default=True)
@click.option("--metrics", default="metrics/student_train.json", show_default=True)
@click.option("--epoch-curve", default="metrics/student_epochs.csv", show_default=True)
@click.option("--batch-curve", default="metrics/student_loss.csv", show_default=True)
@click.option("--terms-curve", default="metrics/student_terms.csv", show_default=True,
              help="The per-epoch loss terms in long form (epoch, term, value), one colour per term in dvc plots.")
@click.option("--resume-file", default="models/student.resume.pt", show_default=True,
              help="Training state saved every few batches and after every epoch; a crashed run resumes from it.")
@friendly_errors
def main(params_path, dataset_dir, points_path, pseudo_path, teacher_cache, out, metrics, epoch_curve,
         batch_curve, terms_curve, resume_file):
    rank, world_size, local_rank = runner.distributed_context()
    # a torchrun worker (world_size > 1) adds to the log its launcher started
    cfg = (start("student_train", params_path, append_log=world_size > 1) if rank == 0
           else load_stage("student_train", params_path))
    processes = cfg.student.processes
    if processes > 1 and world_size == 1:
        # relaunch under torchrun; the children see RANK/WORLD_SIZE and train data-parallel
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
                   *sys.argv]
        sys.exit(subprocess.call(command))
    if world_size > 1:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))
    dataset = load_dataset(dataset_dir, check_files=False)
    paths = {"points": points_path, "pseudo": pseudo_path, "teacher_cache": teacher_cache,
             "resume": Path(resume_file)}
    curves = LiveCurves("student_train", "epoch", LIVE_TERMS)     # only rank 0 calls on_epoch
    model, variant, history, summary = runner.train(
        cfg, dataset, paths, rank=rank, world_size=world_size, device=pick_device(local_rank), on_epoch=curves.row)
    curves.end()
    if rank == 0:
        runner.save(out, model, dataset, cfg, variant, summary)
        epochs, batches = runner.curves(history)
        _write_csv(epoch_curve, epochs)
        _write_csv(batch_curve, batches)
        write_terms_csv(terms_curve, epochs, "epoch", STUDENT_TERMS)
        results = ("val_avg_0.1_0.7", "best_epoch", "final_loss", *(f"final_{t}" for t in TERMS), *DIAGNOSTICS)
        write_json(metrics, {key: summary[key] for key in results})
        write_run_log("student_train", {**{k: v for k, v in summary.items() if k not in results},
                                        "git_revision": git_revision(".", "student_train")})
        paths["resume"].unlink(missing_ok=True)
        val = summary["val_avg_0.1_0.7"]
        click.echo(f"student {summary['run']}: {summary['epochs_trained']} of at most {summary['epochs']} epochs, kept "
                   f"epoch {summary['best_epoch']} (val avg mAP {'n/a' if val is None else f'{val:.2f}'}), "
                   f"loss {summary['final_loss']:.4f}, "
                   f"{summary['windows_per_second']:.0f} windows/s, {summary['parameters'] / 1e6:.2f}M parameters -> {out}")
    if world_size > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
