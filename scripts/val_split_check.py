"""Does the val split rank the comparison's rows as the test split does?

    python scripts/val_split_check.py --repo <clone that ran scripts/run_comparison.sh> [--subsets 150]

For each finished experiment `<dataset>-<run>-s<seed>` of the named rows it reads the kept
epoch's val score (metrics/student_train.json) and the test proposals (data/online of the
experiment, from the clone's DVC cache), then:
- prints which classes the val and test videos hold (val mAP averages only over the classes
  present);
- prints how long the instances of each split are (mean, share longer than 8 s);
- scores the test proposals on random subsets of as many test videos as val has: the spread an
  honest val split of that size would show. A row gap on val far outside that spread says the
  split itself, not its size, ranks the rows differently;
- scores them on the test videos with the longest actions (mean instance length; the half, and as
  many videos as val has) against the rest: whether the rows' order depends on action length.
Reads nothing of the test split that the pipeline does not already report; chooses nothing.
"""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import click
import numpy as np
import pandas as pd
import yaml

from onpoint_core.data.dataset import load_dataset
from onpoint_core.errors import OnPointError, friendly_errors
from onpoint_core.evaluation import evaluate_detections

RUNS = ("onpoint", "teacher_oat", "no_cass_anticipation", "fully_supervised")
REFERENCE = "fully_supervised"


def _git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def _cached(repo, md5):
    return Path(repo) / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]


def experiment_refs(repo):
    """{experiment name: git ref} of the clone's experiments."""
    refs = _git(repo, "for-each-ref", "--format=%(refname)", "refs/exps").split()
    return {ref.rsplit("/", 1)[-1]: ref for ref in refs}


def test_proposals(repo, ref):
    """data/online/proposals.parquet of one experiment, from the DVC cache its dvc.lock points at."""
    lock = yaml.safe_load(_git(repo, "show", f"{ref}:dvc.lock"))
    out = next(o for o in lock["stages"]["online_eval"]["outs"] if o["path"] == "data/online")
    listing = json.loads(_cached(repo, out["md5"]).read_text())
    entry = next(e for e in listing if e["relpath"].endswith("proposals.parquet"))
    return pd.read_parquet(_cached(repo, entry["md5"]))


def _selection_gain(repo, ref, kept):
    """Kept val score minus the mean val score of the epochs after the first LR decay."""
    epochs = pd.read_csv(io.StringIO(_git(repo, "show", f"{ref}:metrics/student_epochs.csv")))
    after = epochs[epochs.lr < epochs.lr.iloc[0]]
    return kept - float(after.val_avg.mean()) if len(after) else 0.0


def _evaluate(dataset, proposals, videos):
    gt = dataset.segments[dataset.segments.video_id.isin(videos)]
    found = proposals[proposals.video_id.isin(videos)]
    return evaluate_detections(gt, found, ambiguous=dataset.ambiguous, videos=list(videos))


def _score(dataset, proposals, videos):
    return _evaluate(dataset, proposals, videos)["avg_0.1_0.7"]


def _lengths(dataset, labels):
    """Per split: instances, mean length (s), share longer than 8 s."""
    length = labels.end - labels.start
    return pd.DataFrame({"instances": labels.groupby("subset").size(),
                         "mean length (s)": length.groupby(labels.subset).mean().round(2),
                         "share > 8 s": (length > 8).groupby(labels.subset).mean().round(3)})


def _longest_first(dataset, test):
    """The test videos sorted by the mean length of their instances, longest first."""
    segments = dataset.segments[dataset.segments.video_id.isin(test)]
    return list((segments.end - segments.start).groupby(segments.video_id).mean().sort_values(ascending=False).index)


def _per_class(result):
    """{class: AP averaged over the tIoU thresholds 0.1:0.7} of one evaluate_detections result."""
    return {c: float(np.mean(list(aps.values()))) for c, aps in result["per_class"].items()}


@click.command()
@click.option("--repo", required=True, type=click.Path(exists=True, file_okay=False),
              help="The clone whose experiments to read (its data/dataset must be the profile's dataset).")
@click.option("--dataset-name", default="synthetic", show_default=True, help="The params.yaml entry the rows ran on.")
@click.option("--seeds", default="52,53,54", show_default=True)
@click.option("--subsets", default=150, show_default=True, help="Random test subsets of the val split's size.")
@friendly_errors
def main(repo, dataset_name, seeds, subsets):
    dataset = load_dataset(Path(repo) / "data" / "dataset", check_files=False)
    val, test = dataset.video_ids("val"), dataset.video_ids("test")
    subset_of = dict(zip(dataset.videos.video_id, dataset.videos.subset))
    labels = dataset.segments.assign(subset=dataset.segments.video_id.map(subset_of))
    share = pd.crosstab(labels.label, labels.subset, normalize="columns").round(3)
    click.echo(f"{len(val)} val videos, {len(test)} test videos; share of instances per class:\n{share.to_string()}")
    click.echo(f"instance lengths per split:\n{_lengths(dataset, labels).to_string()}")
    missing = sorted(set(dataset.classes) - set(labels[labels.subset == "val"].label))
    click.echo(f"classes without any val instance: {', '.join(missing) or 'none'}")

    refs = experiment_refs(repo)
    rng = np.random.default_rng(0)
    draws = [rng.choice(test, len(val), replace=False) for _ in range(subsets)]
    longest = _longest_first(dataset, test)
    length_groups = {f"longest {len(val)}": longest[:len(val)], f"longest half": longest[:len(longest) // 2],
                     "shorter half": longest[len(longest) // 2:]}
    by_run, classes, selection_gain, by_length = {}, {}, {}, {}
    for run in RUNS:
        for seed in seeds.split(","):
            name = f"{dataset_name}-{run}-s{seed}"
            if name not in refs:
                raise OnPointError(f"{repo}: experiment {name} not found (run scripts/run_comparison.sh there first)")
            val_score = json.loads(_git(repo, "show", f"{refs[name]}:metrics/student_train.json"))["val_avg_0.1_0.7"]
            selection_gain.setdefault(run, []).append(_selection_gain(repo, refs[name], val_score))
            proposals = test_proposals(repo, refs[name])
            on_draws = np.array([_score(dataset, proposals, d) for d in draws])
            on_test = _evaluate(dataset, proposals, test)
            by_run.setdefault(run, []).append((val_score, on_test["avg_0.1_0.7"], on_draws))
            classes.setdefault(run, []).append(_per_class(on_test))
            by_length.setdefault(run, []).append({g: _score(dataset, proposals, v) for g, v in length_groups.items()})
            click.echo(f"{name}: val {val_score:.1f}, test {by_run[run][-1][1]:.1f}, "
                       f"test subsets of {len(val)} videos {on_draws.mean():.1f} ± {on_draws.std():.1f}")
    table = pd.DataFrame({run: pd.DataFrame(rows).mean() for run, rows in classes.items()}).round(1)
    table["in val"] = ["no" if c in missing else "yes" for c in table.index]
    click.echo(f"test AP per class (avg over tIoU 0.1:0.7, mean over seeds):\n{table.to_string()}")
    present = table[table["in val"] == "yes"].drop(columns="in val").mean()
    click.echo("test, mean AP over the classes val holds: "
               + ", ".join(f"{run} {value:.1f}" for run, value in present.items()))
    lengths = pd.DataFrame({run: pd.DataFrame(rows).mean() for run, rows in by_length.items()}).round(1)
    click.echo(f"test avg 0.1:0.7 on the test videos grouped by mean action length (mean over seeds):\n"
               f"{lengths.to_string()}")
    click.echo("kept epoch's val score minus the mean val score of the epochs after the first LR decay "
               "(what picking the best of noisy epochs adds): "
               + ", ".join(f"{run} {np.mean(g):+.1f}" for run, g in selection_gain.items()))
    mean = {run: (np.mean([v for v, _, _ in rows]), np.mean([t for _, t, _ in rows]),
                  np.mean([d for _, _, d in rows], axis=0)) for run, rows in by_run.items()}
    ref_val, ref_test, ref_draws = mean[REFERENCE]
    for run, (val_mean, test_mean, draws_mean) in mean.items():
        if run == REFERENCE:
            continue
        gap = draws_mean - ref_draws
        click.echo(f"{run} - {REFERENCE} (seed means): val {val_mean - ref_val:+.1f}, test {test_mean - ref_test:+.1f}, "
                   f"test subsets {gap.mean():+.1f} ± {gap.std():.1f} ({REFERENCE} below on {np.mean(gap > 0):.0%} of them)")


if __name__ == "__main__":
    main()
