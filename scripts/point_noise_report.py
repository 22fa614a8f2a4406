"""Report of the point-noise study (scripts/run_point_noise.sh): avg mAP against the std of the
noise added to the training points, from `dvc exp show --json`, beside the paper's THUMOS'14 trend.

    python scripts/point_noise_report.py [--out reports/point_noise] [--repo .]

Writes <out>.md (table) and <out>.png (plot). Only experiments of the synthetic entry whose
params differ from the commit's in the noise, the run and the seed are read.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import click

from onpoint_core.errors import friendly_errors
from onpoint_core.io import atomic_file
from onpoint_core.report import ONLINE_METRICS, _mean_spread, _walk, point_noise, read_experiments

# The paper (THUMOS'14, OnPoint, avg mAP 0.1:0.5): 61.9 with exact points, about 48 at 6 s of noise.
PAPER_TREND = ((0.0, 61.9), (6.0, 48.0))
METRICS = ("avg_0.1_0.5", "avg_0.1_0.7", "f1_0.5")


def noise_rows(exp_show):
    """{(run, noise): [metrics of each seed]} of the finished noise-study experiments."""
    rows = defaultdict(list)
    for entry, state, _ in _walk(exp_show):
        name = entry.get("name") or ""
        if state not in (None, "success") or not name.startswith("noise"):
            continue
        data = entry.get("data") or {}
        params = ((data.get("params") or {}).get("params.yaml") or {}).get("data") or {}
        metrics = ((data.get("metrics") or {}).get(ONLINE_METRICS) or {}).get("data")
        if metrics and params.get("dataset") == "synthetic":
            rows[(params["student"]["run"], point_noise(params))].append(metrics)
    return rows


def write_plot(path, table):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.4, 4.0))
    points = sorted((noise, mean) for (r, noise), (mean, _) in table.items() if r == "onpoint" and mean is not None)
    if points:
        axis.plot(*zip(*points), "o-", label="onpoint (ours, synthetic)")
    reference = [mean for (r, _), (mean, _) in table.items() if r == "fully_supervised" and mean is not None]
    if reference:     # reads no points: the same at every noise level
        axis.axhline(reference[0], linestyle="--", color="tab:green", label="fully_supervised (ours; reads no points)")
    axis.plot(*zip(*PAPER_TREND), "k:", label="OnPoint, paper (THUMOS'14)")
    axis.set_xlabel("std of the point noise (s)")
    axis.set_ylabel("avg mAP 0.1:0.5 (%)")
    axis.set_title("Point-noise study: avg mAP vs noise on the training points")
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    with atomic_file(path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=120)
    plt.close(figure)


@click.command()
@click.option("--out", default="reports/point_noise", show_default=True, help="Path prefix of the .md and .png.")
@click.option("--repo", default=".", show_default=True, type=click.Path(file_okay=False, exists=True),
              help="The DVC repository whose experiments to read (a clone that ran the study).")
@friendly_errors
def main(out, repo):
    rows = noise_rows(read_experiments(repo))
    if not rows:
        raise click.ClickException("no finished noise-study experiments (run scripts/run_point_noise.sh)")
    lines = ["| run | noise std (s) | seeds | avg 0.1:0.5 | avg 0.1:0.7 | F1@0.5 |", "|---|---|---|---|---|---|"]
    table = {}
    for run, noise in sorted(rows):
        values = {m: _mean_spread([r.get(m) for r in rows[(run, noise)]]) for m in METRICS}
        table[(run, noise)] = values["avg_0.1_0.5"]
        cells = [f"{mean:.1f}" + (f" ± {sd:.1f}" if sd is not None else "") for mean, sd in values.values()]
        lines.append(f"| {run} | {noise:g} | {len(rows[(run, noise)])} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Paper (THUMOS'14, OnPoint, avg 0.1:0.5): 61.9 with exact points, about 48 at 6 s.")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(f"{out}.md") as handle:
        handle.write("\n".join(lines) + "\n")
    write_plot(f"{out}.png", table)
    click.echo("\n".join(lines))


if __name__ == "__main__":
    main()
