"""Train one student run with changed params and score it on the **val** videos (never test).

    python scripts/probe_val.py teacher_oat --set loss_weights.regression=0.1
    python scripts/probe_val.py onpoint --set lr=3e-4 --set decoder_layers=2
    python scripts/probe_val.py onpoint --data gamma=0.1      # a key of the dataset entry the student reads

How the cpu recipe's student settings were chosen (README, "Online student"): it reads the
outputs of the default `dvc repro` (dataset, points, pseudo segments, teacher cache) and what the
student_train stage reads from params.yaml (shared keys + the selected recipe), applies the
`--set` changes (student keys, dotted for nested ones, checked like params.yaml), trains in
memory, streams the val videos and prints one JSON line with the val metrics. Nothing in the
workspace is written.
"""

import json
import tempfile
import time
from pathlib import Path

import click
import yaml

from onpoint_core.config import ParamsError, StageParams, StudentCfg, build, load_stage
from onpoint_core.data.dataset import load_dataset
from onpoint_core.errors import friendly_errors
from onpoint_core.online import runner as online
from onpoint_core.student import runner
from onpoint_core.student.checkpoint import load_student


def _apply(student, assignment):
    """The typed student settings with one `KEY=VALUE` change, validated like params.yaml."""
    key, _, value = assignment.partition("=")
    *parents, leaf = key.split(".")
    values = student.as_dict()
    target = values
    for name in parents:
        target = target.get(name) if isinstance(target, dict) else None
    if not isinstance(target, dict) or leaf not in target:
        raise click.BadParameter(f"student.{key} is not a student key", param_hint="--set")
    target[leaf] = yaml.safe_load(value)
    try:
        return build(StudentCfg, values, "--set", "student")
    except ParamsError as exc:
        raise click.BadParameter(str(exc), param_hint="--set") from None


@click.command()
@click.argument("run")
@click.option("--set", "changes", multiple=True, help="student.KEY=VALUE (repeatable), e.g. lr=3e-4.")
@click.option("--data", "data_changes", multiple=True,
              help="KEY=VALUE (repeatable) of the dataset entry's student keys: gamma, train_stride.")
@click.option("--params", "params_path", default="params.yaml", show_default=True)
@friendly_errors
def main(run, changes, data_changes, params_path):
    cfg = load_stage("student_train", params_path)
    student = cfg.student.replace(run=run)
    for change in changes:
        student = _apply(student, change)
    data = cfg.data
    for change in data_changes:
        key, _, value = change.partition("=")
        if key not in ("gamma", "train_stride"):
            raise click.BadParameter(f"{key!r}: only gamma and train_stride (window and anchors would also need "
                                     "other windows, targets and network)", param_hint="--data")
        data = data.replace(**{key: type(getattr(data, key))(yaml.safe_load(value))})
    cfg = StageParams(cfg.stage, {**cfg.objects, "student": student, "data": data}, cfg.view)
    online_cfg = load_stage("online_eval", params_path).online
    dataset = load_dataset("data/dataset", check_files=False)
    paths = {"points": "data/points/points.parquet", "pseudo": "data/pseudo/pseudo_segments.parquet",
             "teacher_cache": "data/teacher", "resume": None}
    began = time.perf_counter()
    model, variant, history, summary = runner.train(cfg, dataset, paths, progress=False)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "student.pt"
        runner.save(path, model, dataset, cfg, variant, summary)
        student, meta = load_student(path)
    proposals, _ = online.stream_subset(online.engine_for(student, meta, online_cfg), dataset, subset="val",
                                        progress=False)
    result, _ = online.score(dataset, proposals, subset="val")
    print(json.dumps({"run": run, "set": list(changes), "data": list(data_changes), "final_loss": round(summary["final_loss"], 4),
                      **{f"val_{k}": round(result[k], 2) for k in ("avg_0.1_0.5", "avg_0.1_0.7", "f1_0.5")},
                      "val_proposals": int(result["num_pred"]), "best_epoch": summary["best_epoch"],
                      "epochs_trained": summary["epochs_trained"],
                      # the convergence rule's trace: (epoch, val avg, lr after the epoch)
                      "curve": [[row["epoch"], round(row["val_avg"], 2), row["lr"]] for row in history
                                if row["kind"] == "epoch" and "val_avg" in row],
                      "seconds": round(time.perf_counter() - began)}))


if __name__ == "__main__":
    main()
