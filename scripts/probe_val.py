"""Train one student run with changed params and score it on the **val** videos (never test).

    python scripts/probe_val.py teacher_oat --set loss_weights.regression=0.1
    python scripts/probe_val.py onpoint --set lr=3e-4 --set decoder_layers=2

How the CPU profile's student settings were chosen (README, "Online student"): it reads the
outputs of the default `dvc repro` (dataset, points, pseudo segments, teacher cache) and the
student section of params.yaml as resolved for the default dataset, applies the `--set` changes
(student keys, dotted for nested ones), trains in memory, streams the val videos and prints one
JSON line with the val metrics. Nothing in the workspace is written.
"""

import json
import tempfile
import time
from pathlib import Path

import click
import yaml

from onpoint_core.config import load_params
from onpoint_core.data.dataset import load_dataset
from onpoint_core.errors import friendly_errors
from onpoint_core.online import runner as online
from onpoint_core.student import runner
from onpoint_core.student.checkpoint import load_student


def _apply(student, assignment):
    key, _, value = assignment.partition("=")
    *parents, leaf = key.split(".")
    target = student
    for name in parents:
        target = target[name]
    if leaf not in target:
        raise click.BadParameter(f"student.{key} is not a params.yaml key", param_hint="--set")
    target[leaf] = yaml.safe_load(value)


@click.command()
@click.argument("run")
@click.option("--set", "changes", multiple=True, help="student.KEY=VALUE (repeatable), e.g. lr=3e-4.")
@click.option("--params", "params_path", default="params.yaml", show_default=True)
@friendly_errors
def main(run, changes, params_path):
    cfg = load_params(params_path)
    cfg["student"]["run"] = run
    for change in changes:
        _apply(cfg["student"], change)
    dataset = load_dataset("data/dataset", check_files=False)
    paths = {"points": "data/points/points.parquet", "pseudo": "data/pseudo/pseudo_segments.parquet",
             "teacher_cache": "data/teacher", "resume": None}
    began = time.perf_counter()
    model, variant, _, summary = runner.train(cfg, dataset, paths, progress=False)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "student.pt"
        runner.save(path, model, dataset, cfg, variant, summary)
        student, meta = load_student(path)
    proposals, _ = online.stream_subset(online.engine_for(student, meta, cfg["online"]), dataset, subset="val",
                                        progress=False)
    result, _ = online.score(dataset, proposals, subset="val")
    print(json.dumps({"run": run, "set": list(changes), "final_loss": round(summary["final_loss"], 4),
                      **{f"val_{k}": round(result[k], 2) for k in ("avg_0.1_0.5", "avg_0.1_0.7", "f1_0.5")},
                      "val_proposals": int(result["num_pred"]), "seconds": round(time.perf_counter() - began)}))


if __name__ == "__main__":
    main()
