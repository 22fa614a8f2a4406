"""Inference precision against fp32 on a trained run: are the proposals the same, and the mAP?

    python bench/precision_check.py [--model models/student.pt] [--dataset data/dataset]
                                    [--precision bf16 --precision int8] [--out reports/precision.md]

Streams the test videos through the real engine (as the online_eval stage does, same settings
from params.yaml's `online` section) once in fp32 and once per other precision, in one process
and on the same threads, and compares each run's proposals with fp32's:
- identical: share of fp32's proposals that come out again with the same video, class, start,
  end, gen_time and score (all to 1e-9);
- within 0.1 s: share that come out again with the same video, class and gen_time and a start
  and end within 0.1 s of fp32's (any score);
- avg mAP over tIoU 0.1:0.7 of both, and their difference (points).
After `dvc repro`; no timing here (see online_speed.py --precision): only what changes in the
results. The fp32 row is also checked against the stage's own data/online/proposals.parquet.
"""

from pathlib import Path

import click
import numpy as np
import pandas as pd
import torch

from onpoint_core.config import PRECISIONS, load_stage
from onpoint_core.data.dataset import load_dataset
from onpoint_core.online import runner
from onpoint_core.online.engine import StreamingEngine
from onpoint_core.student.checkpoint import load_student

KEYS = ["video_id", "label", "start", "end", "gen_time"]   # compared to 1e-9 (s)


def matched(reference, other, with_score):
    """Share of `reference` rows that have a row in `other` equal on KEYS (and score) to 1e-9."""
    if len(reference) == 0:
        return float("nan")
    columns = KEYS + (["score"] if with_score else [])

    def keyed(table):
        keys = table[columns].copy()
        for column in columns[2:]:
            keys[column] = np.round(keys[column].astype(float) * 1e9).astype(np.int64)
        return keys

    merged = keyed(reference).merge(keyed(other).drop_duplicates(), how="left", on=columns, indicator=True)
    return float((merged["_merge"] == "both").mean())


def within(reference, other, seconds=0.1):
    """Share of `reference` rows with a row in `other` of the same video, class and gen_time
    (to 1e-9 s) whose start and end are both within `seconds`."""
    if len(reference) == 0:
        return float("nan")
    keys = ["video_id", "label", "gen_ns"]

    def keyed(table):
        table = table.assign(gen_ns=np.round(table["gen_time"].astype(float) * 1e9).astype(np.int64))
        return table[keys + ["start", "end"]]

    left = keyed(reference).reset_index(names="row")
    pairs = left.merge(keyed(other), on=keys, how="inner", suffixes=("", "_other"))
    close = ((pairs["start"] - pairs["start_other"]).abs() <= seconds) & ((pairs["end"] - pairs["end_other"]).abs() <= seconds)
    return float(pairs.loc[close, "row"].nunique() / len(reference))


@click.command()
@click.option("--model", "model_path", default="models/student.pt", show_default=True)
@click.option("--dataset", "dataset_dir", default="data/dataset", show_default=True)
@click.option("--params", "params_path", default="params.yaml", show_default=True)
@click.option("--stage-proposals", default="data/online/proposals.parquet", show_default=True,
              help="The online_eval stage's fp32 proposals, which the fp32 run here must reproduce.")
@click.option("--precision", "precisions", multiple=True, type=click.Choice(PRECISIONS[1:]),
              default=None, help="Default: bf16 and int8 on the CPU, fp16 and bf16 on CUDA.")
@click.option("--device", default=None)
@click.option("--out", "out_path", default=None, help="Also write the table (markdown) here.")
def main(model_path, dataset_dir, params_path, stage_proposals, precisions, device, out_path):
    online = load_stage("online_eval", params_path).online
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    precisions = precisions or (("fp16", "bf16") if device.type == "cuda" else ("bf16", "int8"))
    dataset = load_dataset(dataset_dir, check_files=False)
    model, meta = load_student(model_path, device=device)

    def run(precision):
        engine = StreamingEngine(model, meta, score_threshold=online.score_threshold, nms_iou=online.nms_iou,
                                 tiou_floor_seconds=online.tiou_floor_seconds, device=device, precision=precision)
        proposals, _ = runner.stream_subset(engine, dataset, batch_size=online.stream_batch, progress=False)
        return proposals, runner.score(dataset, proposals)[0]["avg_0.1_0.7"]

    reference, reference_map = run("fp32")
    lines = [f"Precision against fp32 on {model_path} ({device}, {torch.get_num_threads()} threads, "
             f"{len(reference)} fp32 proposals on the test videos)", "",
             "| precision | identical | within 0.1 s | avg mAP 0.1:0.7 | difference |", "|---|---|---|---|---|",
             f"| fp32 | 100.0% | 100.0% | {reference_map:.2f} | 0.00 |"]
    if Path(stage_proposals).exists():
        stage = pd.read_parquet(stage_proposals)
        same = len(stage) == len(reference) and matched(stage, reference, True) == 1.0
        print(f"fp32 here vs {stage_proposals}: {'identical' if same else 'DIFFERENT'} "
              f"({len(reference)} vs {len(stage)} proposals)")
    for precision in precisions:
        proposals, value = run(precision)
        lines.append(f"| {precision} | {100 * matched(reference, proposals, True):.1f}% | "
                     f"{100 * within(reference, proposals):.1f}% | {value:.2f} | "
                     f"{value - reference_map:+.2f} |")
        print(lines[-1], flush=True)
    table = "\n".join(lines)
    print("\n" + table)
    if out_path:
        Path(out_path).parent.mkdir(parents=True, exist_ok=True)
        Path(out_path).write_text(table + "\n")


if __name__ == "__main__":
    main()
